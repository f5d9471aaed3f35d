#!/usr/bin/env bash
# Debian's `prometheus` server (2.42 on bookworm): the scrape-and-query test runs the real binary against
# the operator's /metrics, with its own temp config and data dir on a free loopback port. Only the binary
# is wanted, never the packaged service: where no policy-rc.d exists yet, a temporary one (exit 101, the
# documented "do not start" answer) keeps the package's postinst from starting it, and is removed again.
# Idempotent: quiet and quick when the binary is present; without root it only says what is missing (the
# test then skips and says why; `make test` runs as root on CI, so there it is never skipped).
set -euo pipefail
command -v prometheus >/dev/null && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "[prometheus] the Debian package prometheus is missing (install it as root; its test is skipped)" >&2
  exit 0
fi
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
echo "[prometheus] apt-get install prometheus (the binary only; the service is not started)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# On a machine booted with systemd the package also enables its unit for the next boot: undo that too.
if [ -d /run/systemd/system ]; then
  systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
