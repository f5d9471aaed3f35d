#!/usr/bin/env bash
# Prints the interpreter .venv is built from.
#
# Why this is not just `python3`: pods on the local cluster are PSS-restricted and run as non-root uids, and
# they run the venv's python. A venv's python is a link to its base interpreter, so that interpreter and
# its standard library must be reachable by every uid. On these machines `python3` is pyenv's, under /root
# (mode 0700); Debian's /usr/bin/python3 is the same 3.11 ABI and world-readable. The first candidate
# that is >= 3.11, has venv, and is world-traversable wins; otherwise the first usable one, with a warning.
set -euo pipefail
first=""
for cand in ${TRAINSMART_PYTHON_CANDIDATES:-python3 /usr/bin/python3}; do
  exe=$(command -v "$cand" 2>/dev/null) || continue
  "$exe" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || continue
  [ -n "$first" ] || first=$exe
  if "$exe" - <<'PY'
import os, stat, sys

def world_reachable(path: str) -> bool:
    path = os.path.realpath(path)
    while True:
        if not os.stat(path).st_mode & stat.S_IXOTH:
            return False
        if path == "/":
            return True
        path = os.path.dirname(path)

lib = os.path.join(sys.base_prefix, "lib", f"python{sys.version_info.major}.{sys.version_info.minor}")
sys.exit(0 if world_reachable(sys.executable) and world_reachable(lib) else 1)
PY
  then
    echo "$exe"
    exit 0
  fi
done
if [ -z "$first" ]; then
  echo "pick-python: no Python >= 3.11 with venv and ensurepip found" >&2
  exit 1
fi
echo "pick-python: warning: $first is not reachable by non-root uids; non-root pods on the local cluster will fail" >&2
echo "$first"
