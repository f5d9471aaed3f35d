#!/usr/bin/env bash
# Debian packages for the container-image and Argo CD tests: buildah builds the Dockerfiles without a
# Docker daemon, mmdebstrap makes the local base image (Docker Hub is not reachable on the build machines),
# podman + runc run the built image; lua5.1 (the reference interpreter) and gopher-lua (the Go Lua 5.1 VM
# Argo CD embeds, built with golang-go) run the Argo CD health checks. Idempotent: quiet and quick when
# everything is present; without root it only says what is missing (the tests that need a tool then skip
# and say why).
set -euo pipefail
need=()
command -v buildah >/dev/null || need+=(buildah)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
command -v lua5.1 >/dev/null || need+=(lua5.1)
command -v go >/dev/null || need+=(golang-go)
[ -d /usr/share/gocode/src/github.com/yuin/gopher-lua ] || need+=(golang-github-yuin-gopher-lua-dev)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "[image-tools] missing Debian packages: ${need[*]} (install them as root; their tests are skipped)" >&2
  exit 0
fi
echo "[image-tools] apt-get install ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
