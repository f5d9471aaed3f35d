#!/usr/bin/env bash
# Debian packages the project needs at run time on a developer or CI machine: iproute2 gives the node
# agent network namespaces (one IP per simulated pod), util-linux gives nsenter/setpriv for per-pod mount
# namespaces and run-as users, python3-venv lets Debian's python3 host .venv. Idempotent and quiet when
# everything is present.
set -euo pipefail
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v unshare >/dev/null || need+=(util-linux)
command -v nsenter >/dev/null || need+=(util-linux)
command -v setpriv >/dev/null || need+=(util-linux)
# Debian's python3 is the world-readable base for .venv (scripts/pick-python.sh says why); it needs venv.
if [ -x /usr/bin/python3 ] && ! /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null; then
  need+=(python3-venv)
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${need[*]} (install them as root)" >&2
  exit 1
fi
echo "[system-deps] apt-get install ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
