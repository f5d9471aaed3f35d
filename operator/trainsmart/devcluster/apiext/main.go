// Command apiext runs the upstream CRD API server (k8s.io/apiextensions-apiserver, the part of
// kube-apiserver that serves CustomResourceDefinitions and custom resources) standalone, so tests can
// check CRDs and custom resources against a current Kubernetes on machines that cannot download
// kube-apiserver. Built by build_apiext_offline.sh from Debian's golang-k8s-apiextensions-apiserver-dev.
//
// The upstream binary (the package's own main.go) is meant to sit behind kube-apiserver's aggregator,
// which serves discovery and merges OpenAPI. Run alone it has two gaps that break kubectl; this main
// closes them around the unmodified upstream packages:
//
//  1. Discovery: its config completion sets EnableDiscovery = false, so GET /apis is a 404 and every
//     kubectl verb fails with "the server could not find the requested resource". We switch it back on
//     after completion, keep the legacy (unaggregated) /apis list in step with the CRDs (upstream only
//     feeds CRD groups into the aggregated list), and answer GET /api with an empty core version list.
//  2. OpenAPI v2: upstream configures only OpenAPI v3, and its CRD OpenAPI controllers (v2 and v3 alike)
//     start only when the v2 spec exists (pkg/apiserver/apiserver.go checks StaticOpenAPISpec), so
//     neither /openapi/v2 nor /openapi/v3 lists the CRDs' schemas: kubectl's validation fails with
//     "failed to download openapi" and `kubectl explain` knows no custom kinds. We set the v2 config
//     exactly as upstream sets v3.
//
// Everything else (flags, storage, admission, authentication) is upstream's pkg/cmd/server unchanged.
package main

import (
	"context"
	"net/http"
	"os"
	"sort"

	"github.com/spf13/cobra"

	"k8s.io/apiextensions-apiserver/pkg/apihelpers"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apiserver"
	"k8s.io/apiextensions-apiserver/pkg/cmd/server/options"
	generatedopenapi "k8s.io/apiextensions-apiserver/pkg/generated/openapi"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/apiserver/pkg/endpoints/handlers/responsewriters"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/util/openapi"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/cache"
	"k8s.io/component-base/cli"
)

func main() {
	ctx := genericapiserver.SetupSignalContext()
	o := options.NewCustomResourceDefinitionsServerOptions(os.Stdout, os.Stderr)
	// The same command as upstream's server.NewServerCommand (same flags), with our run function.
	cmd := &cobra.Command{
		Use:   "apiext",
		Short: "Kubernetes CRD API server (apiextensions-apiserver) with discovery and OpenAPI v2 for kubectl",
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return o.ServerRunOptions.ComponentGlobalsRegistry.Set()
		},
		RunE: func(c *cobra.Command, _ []string) error {
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return run(c.Context(), o)
		},
	}
	cmd.SetContext(ctx)
	o.AddFlags(cmd.Flags())
	os.Exit(cli.Run(cmd))
}

// run is upstream's server.Run plus the two fixes described in the package comment.
func run(ctx context.Context, o *options.CustomResourceDefinitionsServerOptions) error {
	config, err := o.Config()
	if err != nil {
		return err
	}
	// Gap 2: OpenAPI v2, built from the same definitions and namer upstream uses for v3.
	config.GenericConfig.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(
		openapi.GetOpenAPIDefinitionsWithoutDisabledFeatures(generatedopenapi.GetOpenAPIDefinitions),
		openapinamer.NewDefinitionNamer(apiserver.Scheme, scheme.Scheme),
	)
	config.GenericConfig.OpenAPIConfig.Info.Title = "Kubernetes"

	completed := config.Complete()
	// Gap 1: Complete() has just switched discovery off; New() reads the flag, so switch it on here.
	completed.GenericConfig.EnableDiscovery = true
	server, err := completed.New(genericapiserver.NewEmptyDelegate())
	if err != nil {
		return err
	}
	serveEmptyCoreAPI(server.GenericAPIServer)
	if err := listCRDGroupsInLegacyDiscovery(server); err != nil {
		return err
	}
	return server.GenericAPIServer.PrepareRun().RunWithContext(ctx)
}

// serveEmptyCoreAPI answers GET /api (the core group's versions) with an empty list. This server has no
// core group, but clients ask: client-go tolerates a 404 there, other clients (Kopf's resource scan, for
// one) expect the document.
func serveEmptyCoreAPI(s *genericapiserver.GenericAPIServer) {
	s.Handler.NonGoRestfulMux.Handle("/api", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		responsewriters.WriteRawJSON(http.StatusOK, metav1.APIVersions{
			TypeMeta: metav1.TypeMeta{Kind: "APIVersions"},
			Versions: []string{},
		}, w)
	}))
}

// listCRDGroupsInLegacyDiscovery keeps the unaggregated GET /apis list (served by the generic server's
// DiscoveryGroupManager) in step with the CRDs. Upstream's discovery controller feeds CRD groups only to
// /apis/<group>[/<version>] and to the aggregated list (which kubectl >= 1.26 reads); clients that ask
// for the classic APIGroupList (the Python client's dynamic client, Kopf) would see no custom groups.
// A group lists every version served by an Established CRD of the group, highest priority first, the
// same rule upstream's discovery controller applies.
func listCRDGroupsInLegacyDiscovery(s *apiserver.CustomResourceDefinitions) error {
	crds := s.Informers.Apiextensions().V1().CustomResourceDefinitions()
	groups := s.GenericAPIServer.DiscoveryGroupManager
	sync := func(obj interface{}) {
		if tombstone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tombstone.Obj
		}
		changed, ok := obj.(*apiextensionsv1.CustomResourceDefinition)
		if !ok {
			return
		}
		group := changed.Spec.Group
		all, err := crds.Lister().List(labels.Everything())
		if err != nil {
			return
		}
		seen := map[string]bool{}
		versions := []metav1.GroupVersionForDiscovery{}
		for _, crd := range all {
			if crd.Spec.Group != group || !apihelpers.IsCRDConditionTrue(crd, apiextensionsv1.Established) {
				continue
			}
			for _, v := range crd.Spec.Versions {
				if v.Served && !seen[v.Name] {
					seen[v.Name] = true
					versions = append(versions, metav1.GroupVersionForDiscovery{GroupVersion: group + "/" + v.Name, Version: v.Name})
				}
			}
		}
		if len(versions) == 0 {
			groups.RemoveGroup(group)
			return
		}
		sort.Slice(versions, func(i, j int) bool {
			return version.CompareKubeAwareVersionStrings(versions[i].Version, versions[j].Version) > 0
		})
		groups.AddGroup(metav1.APIGroup{Name: group, Versions: versions, PreferredVersion: versions[0]})
	}
	_, err := crds.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    sync,
		UpdateFunc: func(_, obj interface{}) { sync(obj) },
		DeleteFunc: sync,
	})
	return err
}
