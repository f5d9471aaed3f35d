#!/usr/bin/env bash
# Install checkov (PyPI) into its own virtual environment and print the path of its executable.
# Idempotent: a second run only prints the path.
#
# Why not the `dev` extra: checkov 3.3 pins networkx<3, packaging 23 and python-dateutil<3, and pip would
# downgrade what torch, hyperopt and the kubernetes client run with in .venv. A separate environment keeps
# the scanner's dependencies away from the code under test.
#
# Usage: scripts/install-checkov.sh PYTHON DIR   -> prints DIR/bin/checkov
set -euo pipefail

CHECKOV_VERSION=3.3.30
python=${1:?usage: install-checkov.sh PYTHON DIR}
dir=${2:?usage: install-checkov.sh PYTHON DIR}
checkov=$dir/bin/checkov
stamp=$dir/.installed-$CHECKOV_VERSION  # `checkov --version` alone takes seconds: trust a stamp instead

if [ -x "$checkov" ] && [ -f "$stamp" ]; then
  echo "$checkov"
  exit 0
fi
echo "[install-checkov] checkov $CHECKOV_VERSION into $dir" >&2
"$python" -m venv --clear "$dir"
"$dir/bin/python" -m pip install -q --disable-pip-version-check "checkov==$CHECKOV_VERSION" >&2
[ "$("$checkov" --version)" = "$CHECKOV_VERSION" ] || { echo "install-checkov: not $CHECKOV_VERSION" >&2; exit 1; }
touch "$stamp"
echo "$checkov"
