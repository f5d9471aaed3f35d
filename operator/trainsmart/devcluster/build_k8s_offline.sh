#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and kube-scheduler v1.20.2 from Debian bookworm's
# `kubernetes` source package (which vendors every dependency), and takes etcd from Debian's
# `etcd-server` package, for machines that reach only Debian's archive and PyPI.
#
# Why a source build: no package registry reachable here ships kube-apiserver as a binary. The facts this
# script relies on are recorded in shared/docs/offline-toolchain.md; each step below says why it exists.
#
# Usage: build_k8s_offline.sh DEST_DIR STAMP
# Idempotent: exits at once when DEST_DIR already holds all four binaries built with this STAMP (the stamp
# names the build recipe's revision, so a fixed recipe replaces binaries cached by an older one).
# Needs root for apt-get.
set -euo pipefail

dest=${1:?usage: build_k8s_offline.sh DEST_DIR STAMP}
stamp=${2:?usage: build_k8s_offline.sh DEST_DIR STAMP}
k8s_version=v1.20.2
bins=(kube-apiserver kube-controller-manager kube-scheduler etcd)

have_all() { for b in "${bins[@]}"; do [ -x "$dest/$b" ] || return 1; done; }
# Two test runs on one machine must not build into the same directory at once: the second waits.
mkdir -p "$dest"
exec 9>"$dest/.build.lock"
flock 9
if have_all && [ "$(cat "$dest/.trainsmart-stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "[k8s-offline] binaries already present in $dest"; exit 0
fi
rm -f "$dest/.trainsmart-stamp"

log() { printf '[k8s-offline %(%H:%M:%S)T] %s\n' -1 "$*"; }
if [ "$(id -u)" -ne 0 ]; then
  echo "[k8s-offline] error: the offline build installs Debian packages and needs root." >&2
  echo "[k8s-offline] run as root, or point TRAINSMART_K8S_BIN_DIR / KUBEBUILDER_ASSETS at existing binaries." >&2
  exit 2
fi

export DEBIAN_FRONTEND=noninteractive
# deb-src entries for the same archive and keyring as the machine's own binary entries.
src_list=/etc/apt/sources.list.d/trainsmart-deb-src.sources
if [ ! -f "$src_list" ]; then
  log "enabling Debian source packages ($src_list)"
  cat >"$src_list" <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
log "apt-get update"
apt-get update -qq
log "installing the Go toolchain and build helpers (golang-go, rsync, reflect2 source)"
apt-get install -y -qq --no-install-recommends golang-go rsync make dpkg-dev \
  golang-github-modern-go-reflect2-dev >/dev/null

work=$(mktemp -d "${TMPDIR:-/tmp}/trainsmart-k8s-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

log "fetching etcd from Debian's etcd-server package"
apt-get download -qq etcd-server
dpkg -x etcd-server_*.deb etcd-root
mkdir -p "$dest"
install -m 0755 etcd-root/usr/bin/etcd "$dest/etcd.tmp" && mv "$dest/etcd.tmp" "$dest/etcd"

log "fetching the kubernetes source package (about 34 MB)"
apt-get source --download-only -qq kubernetes
orig=$(ls kubernetes_*.orig.tar.gz | head -n1)
mkdir -p gopath/src/k8s.io
tar -xzf "$orig" -C gopath/src/k8s.io
srcdir=$(find gopath/src/k8s.io -mindepth 1 -maxdepth 1 -type d | head -n1)
[ "$srcdir" = gopath/src/k8s.io/kubernetes ] || mv "$srcdir" gopath/src/k8s.io/kubernetes
tree="$work/gopath/src/k8s.io/kubernetes"

# Kubernetes 1.20 predates a working module build from this tarball: GOPATH mode is required.
export GOPATH="$work/gopath" GO111MODULE=off CGO_ENABLED=0 GOFLAGS= GOCACHE="${GOCACHE:-$work/gocache}"
cd "$tree"

# The vendored reflect2 v1.0.1 segfaults under Go >= 1.18 on the first custom-resource write; Debian's
# 1.0.2 source is a drop-in replacement.
reflect2_src=$(dirname "$(find /usr/share/gocode/src -path '*modern-go/reflect2/reflect2.go' | head -n1)")
log "replacing vendored reflect2 with $reflect2_src"
rm -rf vendor/github.com/modern-go/reflect2
cp -r "$reflect2_src" vendor/github.com/modern-go/reflect2
rm -f vendor/github.com/modern-go/reflect2/go.mod vendor/github.com/modern-go/reflect2/go.sum

# The vendored go-openapi type validator (and kube-openapi's fork of it, which is what CRD validation
# uses) treats any value equal to its type's zero value as null. Built with Go >= 1.18, an empty string
# boxed in an interface shares the runtime's zero buffer with reflect.Zero, so every "" in a custom
# resource was rejected as "must be of type string". Upstream later reduced the check to a nil test; so
# do we, in both copies.
for typego in vendor/github.com/go-openapi/validate/type.go vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go; do
  log "patching $typego (empty strings in custom resources)"
  sed -i 's/if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {/if data == nil {/' "$typego"
  grep -q 'if data == nil {$' "$typego" || { echo "[k8s-offline] error: could not patch $typego" >&2; exit 1; }
done

# The tarball lacks the generated OpenAPI definitions the apiserver links against.
log "generating OpenAPI definitions (make gen_openapi, about 1.5 min)"
make gen_openapi >"$work/gen_openapi.log" 2>&1 || { tail -n 40 "$work/gen_openapi.log"; exit 1; }

vpkg=k8s.io/kubernetes/vendor/k8s.io/component-base/version
ldflags="-s -w -X $vpkg.gitVersion=$k8s_version -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=20 -X $vpkg.gitTreeState=clean"
for b in kube-apiserver kube-controller-manager kube-scheduler; do
  log "go build ./cmd/$b"
  go build -ldflags "$ldflags" -o "$work/out/$b" "./cmd/$b"
done
for b in kube-apiserver kube-controller-manager kube-scheduler; do
  install -m 0755 "$work/out/$b" "$dest/$b.tmp" && mv "$dest/$b.tmp" "$dest/$b"
done
echo "$stamp" >"$dest/.trainsmart-stamp"
log "done: $(ls "$dest" | tr '\n' ' ')in $dest"
