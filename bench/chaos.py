"""The chaos suite, full version (issue 13): the operator SIGKILLed at random moments across many lifecycles,
printed next to the goals.

On a throwaway local cluster (`trainsmart dev up` in a temp state dir) with `trainsmart operator` watching
one namespace, `support.chaos` runs `--lifecycles` lifecycles (plain jobs, jobs failing retryably once,
suspended and resumed jobs, TTL jobs, median sweeps, ASHA sweeps with checkpointed promotions; seeded
order), `--concurrency` at a time, while a killer SIGKILLs the operator every `--kill-min`..`--kill-max`
seconds (seeded) and starts it again at once, as its Deployment would. After the last lifecycle ended and
`--quiet` seconds with no kills, it counts duplicate pods and trials, stuck objects, resumes losing more
epochs than the checkpoint interval, unexpected outcomes and operator tracebacks (goal 0 each; see
tests/support/chaos.py for how each is counted). `tests/chaos/test_chaos_small.py` is the small version.

Usage: python bench/chaos.py [--lifecycles 100] [--seed 1] [--concurrency 6] [--quiet 120]
Exit status 0 when every figure met its goal. Logs are kept (path printed) when one did not.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from kubernetes import client, config

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]

from support.chaos import Chaos, ChaosConfig  # noqa: E402 - after the path set-up
from sweep_overhead import cluster, install_crds  # noqa: E402
from trainsmart.devcluster.operator_process import pod_gateway, trainsmart_operator  # noqa: E402

NAMESPACE = "chaos"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lifecycles", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--kill-min", type=float, default=3.0)
    parser.add_argument("--kill-max", type=float, default=15.0)
    parser.add_argument("--quiet", type=float, default=120.0, help="seconds of quiet before the final count")
    parser.add_argument("--lifecycle-timeout", type=float, default=600.0)
    args = parser.parse_args()
    state_dir = Path(tempfile.mkdtemp(prefix="trainsmart-bench-chaos-"))
    state_dir.chmod(0o755)  # pods (non-root) get volumes from under it
    ok = False
    try:
        with cluster(state_dir) as kubeconfig:
            api = config.new_client_from_config(config_file=str(kubeconfig))
            install_crds(api)
            core = client.CoreV1Api(api)
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
            operator = trainsmart_operator(
                kubeconfig,
                state_dir / "operator.log",
                report_host=pod_gateway(core),
                extra_args=["--namespace", NAMESPACE],
            )
            with operator:
                settings = ChaosConfig(
                    lifecycles=args.lifecycles,
                    seed=args.seed,
                    concurrency=args.concurrency,
                    kill_min=args.kill_min,
                    kill_max=args.kill_max,
                    quiet=args.quiet,
                    lifecycle_timeout=args.lifecycle_timeout,
                )
                figures = Chaos(api, NAMESPACE, operator, state_dir / "agent", settings).run()
            print(figures.table())
            ok = not figures.failures()
            api.close()
    finally:
        if ok:
            shutil.rmtree(state_dir, ignore_errors=True)
        else:
            print(f"logs kept in {state_dir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
