#!/usr/bin/env bash
# Debian's `chromium`: the report test opens `trainsmart report`'s HTML in headless Chromium (the page
# renders, every plot is drawn, no console errors) and keeps a screenshot. Only the browser is wanted, no
# desktop: --no-install-recommends. Idempotent: quiet and quick when the binary is present; without root it
# only says what is missing (the test then skips and says why; `make test` runs as root on CI, so there it
# is never skipped).
set -euo pipefail
command -v chromium >/dev/null && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "[chromium] the Debian package chromium is missing (install it as root; the report browser test is skipped)" >&2
  exit 0
fi
echo "[chromium] apt-get install chromium (headless use only)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
