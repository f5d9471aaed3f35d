"""TrainingJobs and HyperparamSweeps as users write them: API bodies, and the spec pieces tests share.

The local cluster's nodes are simulated GPU nodes, tainted as GPU pools are, so a job that should run
there tolerates the taint; one trainer thread per process keeps two replicas from fighting over a small
machine's cores; `digits` with a small MLP trains in seconds. Written once, so what "fast" means or how
the taint is spelled changes in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trainsmart.api import GROUP, VERSION

GPU_TOLERATIONS: list[dict[str, Any]] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
ONE_THREAD_ENV: list[dict[str, Any]] = [{"name": "OMP_NUM_THREADS", "value": "1"}]
FAST_DIGITS: dict[str, Any] = {
    "dataset": {"name": "digits"},
    "model": {"name": "mlp", "hiddenSizes": [32]},
    "batchSize": 32,
    "seed": 3,
}
"""An epoch in well under a second: for jobs that only need to finish."""
SLOW_DIGITS: dict[str, Any] = {
    "dataset": {"name": "digits"},
    "model": {"name": "mlp", "hiddenSizes": [64]},
    "batchSize": 1,
    "seed": 3,
}
"""About a second per epoch on one core (batch size 1 makes every step count): progress can be watched,
and a suspension or a kill lands between epochs."""


def resource_body(kind: str, name: str, spec: Mapping[str, Any], **metadata: Any) -> dict[str, Any]:
    """The body of a trainsmart object, as `kubectl apply` would send it; `metadata` adds labels etc."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": name, **metadata},
        "spec": dict(spec),
    }


def trainingjob_body(name: str, spec: Mapping[str, Any], **metadata: Any) -> dict[str, Any]:
    return resource_body("TrainingJob", name, spec, **metadata)


def sweep_body(name: str, spec: Mapping[str, Any], **metadata: Any) -> dict[str, Any]:
    return resource_body("HyperparamSweep", name, spec, **metadata)


def random_lr_sweep_spec(trial_template: Mapping[str, Any], **spec: Any) -> dict[str, Any]:
    """A random search over the learning rate maximizing val_accuracy: two trials, both at once (seed 5).

    The smallest sweep that still shows everything a sweep adds over a job: several trials, a best one."""
    lr = {"name": "lr", "path": "trainer.config.learningRate", "type": "loguniform", "min": 0.001, "max": 0.05}
    return {
        "objective": {"metric": "val_accuracy", "goal": "maximize"},
        "algorithm": {"name": "random", "seed": 5},
        "maxTrials": 2,
        "parallelTrials": 2,
        "parameters": [lr],
        "trialTemplate": dict(trial_template),
        **spec,
    }
