#!/usr/bin/env bash
# Builds a current Kubernetes CRD server, k8s.io/apiextensions-apiserver 0.36.4 (the CRD part of
# kube-apiserver 1.36), from Debian sid's Go source packages, and takes etcd 3.5.30 from sid's etcd-server,
# for machines that reach only Debian's archive, PyPI and npm.
#
# Why: the project's full local control plane is Kubernetes 1.20 (the newest buildable from bookworm); the
# CRDs must also be checked against a current server (CEL rules, strict field validation, ...). Debian sid
# ships the apiextensions-apiserver source and all its dependencies as golang-*-dev packages, which build in
# GOPATH mode without patches. The facts this relies on are in shared/docs/offline-toolchain.md.
#
# Nothing from sid is installed into the system: a private apt configuration fetches the .debs, `dpkg -x`
# unpacks them into a temp root, and that root (2.3 GB) and the Go build cache (1.4 GB) are deleted at the
# end. Only DEST_DIR/apiext (our wrapper around the upstream server, ./apiext/main.go) and DEST_DIR/etcd stay.
#
# Usage: build_apiext_offline.sh DEST_DIR STAMP
# Idempotent: exits at once when DEST_DIR holds both binaries built with this STAMP. Needs root (apt-get).
# Env: TRAINSMART_DEBIAN_MIRROR overrides the mirror taken from the machine's apt sources.
set -euo pipefail

dest=${1:?usage: build_apiext_offline.sh DEST_DIR STAMP}
stamp=${2:?usage: build_apiext_offline.sh DEST_DIR STAMP}
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
wrapper_src=$script_dir/apiext/main.go

# The pinned recipe. The source package's version is checked against sid before anything is fetched: when
# sid has moved on, this fails and says what it found (update the pins, the stamp and the docs together).
apiext_pkg=golang-k8s-apiextensions-apiserver-dev
apiext_version=0.36.4-1
kube_version=v1.36.4 # apiextensions-apiserver v0.36.x is published from Kubernetes v1.36.x
go_pkgs=(golang-1.27-go golang-1.27-src)
goroot_rel=usr/lib/go-1.27
etcd_pkg=etcd-server
etcd_upstream=3.5.30
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

have_all() { [ -x "$dest/apiext" ] && [ -x "$dest/etcd" ]; }
# Two test runs on one machine must not build into the same directory at once: the second waits.
mkdir -p "$dest"
exec 9>"$dest/.build.lock"
flock 9
if have_all && [ "$(cat "$dest/.trainsmart-stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "[apiext-offline] binaries already present in $dest"
  exit 0
fi
rm -f "$dest/.trainsmart-stamp"

t0=$SECONDS
log() { printf '[apiext-offline %(%H:%M:%S)T +%4ds] %s\n' -1 $((SECONDS - t0)) "$*"; }
die() {
  echo "[apiext-offline] error: $*" >&2
  exit 1
}
if [ "$(id -u)" -ne 0 ]; then
  echo "[apiext-offline] error: the offline build runs apt-get and needs root." >&2
  echo "[apiext-offline] run it as root, or point TRAINSMART_APIEXT_BIN_DIR at a directory with apiext and etcd." >&2
  exit 2
fi
[ -f "$wrapper_src" ] || die "the wrapper source $wrapper_src is missing"
export DEBIAN_FRONTEND=noninteractive
if [ ! -f "$keyring" ]; then
  log "installing debian-archive-keyring"
  apt-get install -y -qq --no-install-recommends debian-archive-keyring >/dev/null
fi

# The machine's own Debian mirror (deb822 .sources or one-line .list entries), not a hard-coded one: CI
# machines may use a local mirror. The first URI whose path ends in /debian is the main archive.
debian_mirror() {
  local files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
  # grep exits non-zero for a missing file or no match: never let that abort the script.
  { grep -hsv '^[[:space:]]*#' "${files[@]}" | grep -oE '(https?|file)://[^][[:space:]]+' |
    grep -E '/debian/?$' | head -n1 | sed 's:/$::'; } || true
}
mirror=${TRAINSMART_DEBIAN_MIRROR:-$(debian_mirror)}
mirror=${mirror:-http://deb.debian.org/debian}

base=${TMPDIR:-/var/tmp}
# The unpacked root (2.3 GB) and the Go build cache (1.4 GB) need room; a full disk half-way through a
# 4-minute build is a worse message than this one.
free_kb=$(df -Pk "$base" | awk 'NR == 2 {print $4}')
[ "${free_kb:-0}" -ge $((5 * 1024 * 1024)) ] ||
  die "the build needs about 5 GB free in $base (TMPDIR), found $((${free_kb:-0} / 1024)) MB"
work=$(mktemp -d "$base/trainsmart-apiext-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
log "work dir $work, Debian mirror $mirror"

# A private apt state for sid: its own sources, lists, cache and an empty status file, so neither the
# system's package lists nor its installed set are touched or consulted.
apt_dir=$work/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
echo "deb [signed-by=$keyring] $mirror sid main" >"$apt_dir/sources.list"
: >"$apt_dir/status"
cat >"$apt_dir/apt.conf" <<CONF
Dir::Etc::SourceList "$apt_dir/sources.list";
Dir::Etc::SourceParts "/dev/null";
Dir::State::Lists "$apt_dir/lists";
Dir::State::status "$apt_dir/status";
Dir::Cache "$apt_dir/cache";
Acquire::Retries "5";
APT::Sandbox::User "root";
CONF
export APT_CONFIG=$apt_dir/apt.conf

# Network steps are retried: a CI machine's first build must survive a flaky mirror.
retry() {
  local n
  for n in 1 2 3 4; do
    "$@" && return 0
    log "attempt $n of: $* failed; retrying in $((n * 10)) s"
    sleep $((n * 10))
  done
  "$@"
}

log "apt-get update (sid, private lists)"
retry apt-get update -qq

found=$(apt-cache policy "$apiext_pkg" | awk '/Candidate:/ {print $2}')
[ "$found" = "$apiext_version" ] ||
  die "sid offers $apiext_pkg '${found:-nothing}', this recipe is pinned to $apiext_version; update the pins in $0"
etcd_found=$(apt-cache policy "$etcd_pkg" | awk '/Candidate:/ {print $2}')
[[ "$etcd_found" == "$etcd_upstream"-* ]] ||
  die "sid offers $etcd_pkg '${etcd_found:-nothing}', this recipe is pinned to $etcd_upstream-*; update the pins in $0"

# The build closure: every Go source package the server needs (names golang-*-dev) plus the compiler.
# Virtual names (<...>) drop out of the filter; their real providers are in the list already.
log "resolving the build closure of $apiext_pkg $apiext_version"
apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
  --no-enhances "$apiext_pkg" | grep -E '^golang[^ ]*-dev$' | sort -u >"$work/closure.txt"
printf '%s\n' "${go_pkgs[@]}" >>"$work/closure.txt"
mapfile -t pkgs < <(sort -u "$work/closure.txt" | sed "s/^$apiext_pkg\$/$apiext_pkg=$apiext_version/")
log "downloading ${#pkgs[@]} packages"
mkdir -p "$work/debs" "$work/etcd-deb"
(cd "$work/debs" && retry apt-get download -qq "${pkgs[@]}" "$etcd_pkg=$etcd_found")
# Record what was built from: everything but the pinned source package floats with sid.
(cd "$work/debs" && ls *.deb) >"$work/closure-versions.txt"
mv "$work/debs/${etcd_pkg}_"*.deb "$work/etcd-deb/"

log "unpacking $(find "$work/debs" -name '*.deb' | wc -l) packages (dpkg -x, ~2.3 GB)"
root=$work/root
mkdir -p "$root"
for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$root"; done
rm -rf "$work/debs" "$apt_dir/cache"
dpkg -x "$work"/etcd-deb/*.deb "$work/etcd-root"
[ -x "$work/etcd-root/usr/bin/etcd" ] || die "$etcd_pkg has no usr/bin/etcd"

# GOPATH mode: Debian installs every Go source package under /usr/share/gocode/src, which is a GOPATH.
# Our wrapper goes into that tree as its own import path so it is built against exactly these sources.
gopath=$root/usr/share/gocode
mkdir -p "$gopath/src/trainsmart.dev/apiext"
cp "$wrapper_src" "$gopath/src/trainsmart.dev/apiext/main.go"
export GOROOT=$root/$goroot_rel
export PATH=$GOROOT/bin:$PATH GOPATH=$gopath GO111MODULE=off GOTOOLCHAIN=local CGO_ENABLED=0 GOPROXY=off
export GOFLAGS= GOENV=off GOCACHE=$work/gocache GOTMPDIR=$work
[ -x "$GOROOT/bin/go" ] || die "no go binary in $GOROOT"
log "go build trainsmart.dev/apiext with $(go version | awk '{print $3}') (about 3 min on 2 cores)"
vpkg=k8s.io/component-base/version
ldflags="-s -w -X $vpkg.gitVersion=$kube_version -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=36 -X $vpkg.gitTreeState=clean"
go build -trimpath -ldflags "$ldflags" -o "$work/out/apiext" trainsmart.dev/apiext
"$work/out/apiext" --help >/dev/null || die "the built apiext does not run"
"$work/etcd-root/usr/bin/etcd" --version >/dev/null || die "sid's etcd does not run on this system"

install -m 0755 "$work/out/apiext" "$dest/apiext.tmp" && mv "$dest/apiext.tmp" "$dest/apiext"
install -m 0755 "$work/etcd-root/usr/bin/etcd" "$dest/etcd.tmp" && mv "$dest/etcd.tmp" "$dest/etcd"
cp "$work/closure-versions.txt" "$dest/built-from.txt"
echo "$stamp" >"$dest/.trainsmart-stamp"
log "done: apiext ($(du -h "$dest/apiext" | cut -f1)) and etcd ($(du -h "$dest/etcd" | cut -f1)) in $dest; cleaning up $work"
