"""The Helm chart as rendered: lint-clean, schema-valid, PSS-restricted and least-privilege, in both modes.

Pins:
- `helm lint --strict` passes for every supported combination of values (cluster and namespaced mode,
  each webhook certificate source, monitors on);
- every object of `helm template` validates strictly against the Kubernetes OpenAPI schemas
  (kubernetes-validate; 1.25, the oldest it has, and its newest), the peering objects against the CRDs
  the chart ships; kinds of optional add-ons (cert-manager, prometheus-operator) are the expected ones;
- the operator pod meets the `restricted` Pod Security Standard and mounts only a bound token;
- the Grafana dashboard ships, byte-equivalent JSON, in a ConfigMap with the sidecar's label;
- the container's command line is one `trainsmart operator` accepts (no flag drift);
- RBAC: no wildcards; Secrets are never listed, watched, updated or deleted; ConfigMaps (the metrics
  wrapper's) are only created, in the jobs' namespaces; namespaced mode grants
  nothing namespaced cluster-wide, and a Role per watched namespace (plus, in the release namespace,
  patch of pods: the operator labels its own pod);
- reports go to a Service that selects only the acting replica's pod (its peering-active label);
- the webhook configuration the chart ships equals the operator's own `build_webhook_configuration`;
- combinations that cannot work (2 replicas with per-replica self-signed CAs, a Secret without CA) are
  refused with a message, and values outside the schema are rejected.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from jsonschema import Draft7Validator  # type: ignore[import-untyped]

from support.paths import REPO
from trainsmart.admission.webhook import ServiceRef, build_webhook_configuration
from trainsmart.cli import build_parser

CHART = REPO / "charts" / "trainsmart"
HELM_VERSION = "v3.18.0"
K8S_SCHEMA_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())
NAMESPACED = {"watch.mode": "namespaces", "watch.namespaces": "{team-a,team-b}"}
CERT_MANAGER = {"webhook.certificate.source": "certManager", "replicaCount": "2"}
CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n").decode()
SECRET = {
    "webhook.certificate.source": "secret",
    "webhook.certificate.secretName": "tls",
    "webhook.certificate.caBundle": CA,
}
MONITORS = {
    "metrics.serviceMonitor.enabled": "true",
    "metrics.podMonitor.enabled": "true",
    "metrics.dashboard.enabled": "true",
}
VALUE_SETS = {
    "defaults": {},
    "namespaced": NAMESPACED,
    "cert-manager-2-replicas": CERT_MANAGER,
    "secret-namespaced": {**SECRET, **NAMESPACED},
    "no-webhook-no-metrics": {"webhook.enabled": "false", "metrics.enabled": "false"},
    "monitors": MONITORS,
}
# Kinds without an OpenAPI schema offline (CRDs of add-ons the chart can use, not ship).
ADDON_KINDS = {
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "Certificate"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
}


def find_helm() -> str | None:
    """$TRAINSMART_HELM, then the user cache that scripts/install-helm.sh fills, then PATH."""
    if os.environ.get("TRAINSMART_HELM"):
        return os.environ["TRAINSMART_HELM"]
    cached = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / f"trainsmart/helm-{HELM_VERSION}/helm"
    return str(cached) if os.access(cached, os.X_OK) else shutil.which("helm")


def helm(*args: str, values: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    binary = find_helm()
    if binary is None:
        pytest.skip("helm is not installed: run `make helm` (scripts/install-helm.sh); `make test` does")
    sets = [arg for key, value in (values or {}).items() for arg in ("--set", f"{key}={value}")]
    return subprocess.run([binary, *args, *sets], capture_output=True, text=True, timeout=120, check=False)


def render(values: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """`helm template` (CRDs included) as objects; a fresh copy of a cached rendering per call."""
    return copy.deepcopy(_render(tuple(sorted((values or {}).items()))))


@functools.cache
def _render(values: tuple[tuple[str, str], ...]) -> list[dict[str, Any]]:
    result = helm(
        "template", "ts", str(CHART), "--namespace", "trainsmart-system", "--include-crds", values=dict(values)
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def pick(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def pod_spec(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = pick(objects, "Deployment")
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_helm_lint_strict_passes(values: dict[str, str]) -> None:
    result = helm("lint", "--strict", str(CHART), values=values)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_every_rendered_object_validates_strictly(values: dict[str, str]) -> None:
    objects = render(values)
    crds = {(c["spec"]["group"], c["spec"]["names"]["kind"]): c for c in pick(objects, "CustomResourceDefinition")}
    for obj in objects:
        group = obj["apiVersion"].rpartition("/")[0]
        if (group, obj["kind"]) in crds:
            schema = crds[(group, obj["kind"])]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
            Draft7Validator(schema).validate(obj)
        elif (obj["apiVersion"], obj["kind"]) in ADDON_KINDS:
            assert obj["spec"], obj
        else:
            for version in K8S_SCHEMA_VERSIONS:
                kubernetes_validate.validate(obj, version, strict=True)


def test_the_operator_pod_is_pss_restricted() -> None:
    spec = pod_spec(render())
    pod_sc = spec["securityContext"]
    assert pod_sc["runAsNonRoot"] is True and pod_sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    assert not any(key in spec for key in ("hostNetwork", "hostPID", "hostIPC"))
    allowed_volumes = {"emptyDir", "projected", "secret", "configMap"}
    assert all(set(volume) - {"name"} <= allowed_volumes for volume in spec["volumes"])
    (container,) = spec["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["runAsNonRoot"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["readOnlyRootFilesystem"] is True
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert container["livenessProbe"]["httpGet"]["port"] == "health"
    assert container["readinessProbe"]["httpGet"]["port"] == "report"


def test_reports_reach_only_the_acting_replica() -> None:
    services = {s["metadata"]["name"]: s for s in pick(render(), "Service")}
    report = services["ts-trainsmart-report"]["spec"]
    assert report["selector"]["trainsmart.dev/peering-active"] == "true"
    assert [p["name"] for p in report["ports"]] == ["report"]
    assert "report" not in [p["name"] for p in services["ts-trainsmart"]["spec"]["ports"]]
    assert not pick(render({"webhook.enabled": "false", "metrics.enabled": "false"}), "Service")[1:]


def test_the_dashboard_ships_as_a_configmap_the_grafana_sidecar_picks_up() -> None:
    (config_map,) = pick(render(MONITORS), "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["trainsmart.json"])
    assert dashboard == json.loads((CHART / "dashboards" / "trainsmart.json").read_text())
    assert not pick(render(), "ConfigMap")


def test_only_a_bound_token_with_the_cluster_ca_is_mounted() -> None:
    spec = pod_spec(render())
    (access,) = [v for v in spec["volumes"] if v["name"] == "kube-api-access"]
    sources = access["projected"]["sources"]
    assert sources[0]["serviceAccountToken"]["expirationSeconds"] <= 3607
    assert sources[1]["configMap"]["name"] == "kube-root-ca.crt"
    mounts = {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["/var/run/secrets/kubernetes.io/serviceaccount"]["readOnly"] is True


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_the_operator_accepts_the_command_line_the_chart_writes(values: dict[str, str]) -> None:
    (container,) = pod_spec(render(values))["containers"]
    assert container["command"] == ["trainsmart", "operator"]
    args = build_parser().parse_args(["operator", *container["args"]])
    assert args.peering == "ts-trainsmart" and args.liveness_port == 8081
    assert args.report_url == "http://ts-trainsmart-report.trainsmart-system.svc:8080/v1/reports"
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"] if "valueFrom" in e}
    # Kopf's peering identity (the image's uid has no passwd entry to derive one from); --pod-name/-namespace.
    assert env == {"POD_ID": "metadata.name", "POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    if values.get("watch.mode") == "namespaces":
        assert args.namespace == ["team-a", "team-b"]
    else:
        assert args.namespace is None


def test_the_default_trainer_image_and_command_reach_the_operator_settings() -> None:
    """An air-gapped registry mirrors the packaged trainer: jobs that name no image get the mirror."""
    values = {"operator.trainer.image": "registry.local/ml/trainer:1", "operator.trainer.command": "{python,-m,t x}"}
    (container,) = pod_spec(render(values))["containers"]
    args = build_parser().parse_args(["operator", *container["args"]])
    assert args.trainer_image == "registry.local/ml/trainer:1"
    assert shlex.split(args.trainer_command) == ["python", "-m", "t x"]
    (plain,) = pod_spec(render())["containers"]
    assert not any(arg.startswith("--trainer-") for arg in plain["args"])


def _rules(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [rule for role in pick(objects, kind) for rule in role["rules"]]


@pytest.mark.parametrize("values", [{}, NAMESPACED, CERT_MANAGER], ids=["cluster", "namespaced", "cert-manager"])
def test_rbac_has_no_wildcards_and_never_lists_or_changes_secrets(values: dict[str, str]) -> None:
    objects = render(values)
    rules = _rules(objects, "ClusterRole") + _rules(objects, "Role")
    for rule in rules:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule
        if "secrets" in rule["resources"]:
            assert set(rule["verbs"]) <= {"get", "create"}, rule


@pytest.mark.parametrize("values", [{}, NAMESPACED], ids=["cluster", "namespaced"])
def test_rbac_only_creates_configmaps_in_the_jobs_namespaces(values: dict[str, str]) -> None:
    objects = render(values)
    kind = "Role" if values else "ClusterRole"
    jobs = [role for role in pick(objects, kind) if role["metadata"]["name"].endswith("-jobs")]
    assert jobs
    for role in jobs:
        verbs = {verb for rule in role["rules"] if "configmaps" in rule["resources"] for verb in rule["verbs"]}
        assert verbs == {"create"}, role["metadata"]
    others = [role for role in pick(objects, "ClusterRole") + pick(objects, "Role") if role not in jobs]
    assert not [rule for role in others for rule in role["rules"] if "configmaps" in rule["resources"]]


def test_namespaced_mode_grants_nothing_namespaced_cluster_wide() -> None:
    objects = render(NAMESPACED)
    cluster_resources = {res for rule in _rules(objects, "ClusterRole") for res in rule["resources"]}
    webhook_configurations = {"validatingwebhookconfigurations", "mutatingwebhookconfigurations"}
    assert cluster_resources <= {"customresourcedefinitions", "namespaces", *webhook_configurations}
    jobs = [r for r in pick(objects, "Role") if r["metadata"]["name"].endswith("-jobs")]
    assert {r["metadata"]["namespace"] for r in jobs} == {"team-a", "team-b"}
    bindings = {r["metadata"]["namespace"] for r in pick(objects, "RoleBinding")}
    assert bindings == {"team-a", "team-b", "trainsmart-system"}
    (own,) = [r for r in pick(objects, "Role") if r["metadata"]["namespace"] == "trainsmart-system"]
    assert own["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]}]
    assert {p["metadata"]["namespace"] for p in pick(objects, "KopfPeering")} == {"team-a", "team-b"}
    assert not pick(objects, "ClusterKopfPeering")


def test_webhook_configuration_rbac_only_when_the_operator_manages_it() -> None:
    def webhook_rules(values: dict[str, str]) -> list[dict[str, Any]]:
        rules = _rules(render(values), "ClusterRole")
        return [r for r in rules if "validatingwebhookconfigurations" in r["resources"]]

    managed = webhook_rules({})
    assert {"get", "patch"} <= {v for r in managed if r.get("resourceNames") == ["trainsmart.dev"] for v in r["verbs"]}
    assert all(r.get("resourceNames") or r["verbs"] == ["create"] for r in managed)
    assert webhook_rules(CERT_MANAGER) == [] and webhook_rules(SECRET) == []


@pytest.mark.parametrize("values", [CERT_MANAGER, SECRET], ids=["cert-manager", "secret"])
def test_the_shipped_webhook_configuration_matches_the_operators_own(values: dict[str, str]) -> None:
    (shipped,) = pick(render(values), "ValidatingWebhookConfiguration")
    service = ServiceRef("trainsmart-system", "ts-trainsmart", 443)
    client_config: dict[str, Any] = {"service": {"namespace": service.namespace, "name": service.name, "port": 443}}
    if values is SECRET:
        client_config["caBundle"] = CA
    expected = build_webhook_configuration("trainsmart.dev", client_config)
    by_name = {w["name"]: w for w in shipped["webhooks"]}
    assert sorted(by_name) == sorted(w["name"] for w in expected["webhooks"])
    for webhook in expected["webhooks"]:
        assert by_name[webhook["name"]] == webhook


def test_two_replicas_with_operator_issued_certificates_are_refused() -> None:
    result = helm("template", "ts", str(CHART), values={"replicaCount": "2"})
    assert result.returncode != 0 and "every replica would issue its own CA" in result.stderr
    result = helm("template", "ts", str(CHART), values={"webhook.certificate.source": "secret"})
    assert result.returncode != 0 and "webhook.certificate.secretName" in result.stderr


@pytest.mark.parametrize(
    ("key", "value"),
    [("watch.mode", "everything"), ("replicas", "2"), ("webhook.failurePolicy", "Sometimes"), ("metrics.port", "0")],
)
def test_values_outside_the_schema_are_rejected(key: str, value: str) -> None:
    result = helm("template", "ts", str(CHART), values={key: value})
    assert result.returncode != 0 and "values don't meet the specifications of the schema" in result.stderr


def test_every_value_is_documented() -> None:
    """Each key in values.yaml has a comment right above it, or sits inside a documented block."""
    documented_at: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    previous = ""
    undocumented = []
    for line in (CHART / "values.yaml").read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith("-"):
            previous = stripped or previous
            continue
        indent = len(line) - len(line.lstrip())
        while documented_at and documented_at[-1][0] >= indent:
            documented_at.pop()
        key = stripped.split(":", 1)[0]
        inherited = any(doc for _, doc in documented_at)
        has_comment = previous.startswith("#")
        leaf = stripped.split(":", 1)[1].strip() != ""
        if leaf and not (has_comment or inherited):
            undocumented.append(key)
        documented_at.append((indent, has_comment or inherited))
        previous = stripped
    assert undocumented == []
