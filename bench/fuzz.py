"""Fuzz figures (issue 13): Hypothesis-generated TrainingJobs and HyperparamSweeps (valid, near-valid,
hostile) through the real kube-apiserver, admission webhook and operator; prints objects tried, accepted,
refused with a field path, webhook errors/timeouts, operator log problems and admission latency p50/p99.

It is the suite `make test` runs with 40 objects (tests/fuzz/test_fuzz_admission.py), run bigger:
`python bench/fuzz.py [--examples 1000] [--seed N] [--known-defects]`. Exits non-zero when a goal is missed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=1000, help="objects to generate (default 1000)")
    parser.add_argument("--seed", type=int, default=None, help="a seeded run instead of the derandomized one")
    parser.add_argument(
        "--known-defects", action="store_true", help="also generate the shapes of the reported, unfixed defects"
    )
    args = parser.parse_args()
    env = {**os.environ, "TRAINSMART_FUZZ_EXAMPLES": str(args.examples)}
    if args.seed is not None:
        env["TRAINSMART_FUZZ_SEED"] = str(args.seed)
    if args.known_defects:
        env["TRAINSMART_FUZZ_KNOWN_DEFECTS"] = "1"
    test = "tests/fuzz/test_fuzz_admission.py"
    command = [sys.executable, "-m", "pytest", test, "-s", "-q", "-p", "no:cacheprovider", "-m", "cluster"]
    return subprocess.call(command, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
