#!/usr/bin/env bash
# Debian packages the project needs at run time on a developer or CI machine: iproute2 gives the node
# agent network namespaces (one IP per simulated pod), util-linux gives unshare/nsenter for per-pod mount
# namespaces. Idempotent and quiet when everything is present.
set -euo pipefail
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v unshare >/dev/null || need+=(util-linux)
command -v nsenter >/dev/null || need+=(util-linux)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${need[*]} (install them as root)" >&2
  exit 1
fi
echo "[system-deps] apt-get install ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
