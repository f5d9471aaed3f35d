"""The operator's env and the trainer's parsers agree, through the contract module's names only.

Pins:
- every variable the pod builder sets is a name from `trainsmart_trainer.contract` (no retyped strings);
- a built pod's env, resolved the way a kubelet resolves it (downward API, secretKeyRef), read back by the
  trainer's own parsers (`launch.plan_launch`, `settings.runtime_settings`, `settings.load_config`) gives
  the job's world size, a distinct global rank for every process of every replica, replica 0 as the
  master, the config, checkpoint directory, report endpoint + token and the job's identity.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

import pytest

from support.models import make_job
from trainsmart.api import TrainingJob
from trainsmart.builders import build_report_token_secret, build_worker_pod
from trainsmart.builders.env import OPERATOR_ENV_NAMES, RESERVED_ENV_NAMES
from trainsmart.devcluster.agent.podenv import ConfigMapData, resolve_env
from trainsmart.settings import OperatorSettings
from trainsmart_client.job_env import read_job_environment
from trainsmart_trainer import contract, launch
from trainsmart_trainer.settings import load_config, runtime_settings

SETTINGS = OperatorSettings(report_url="http://10.0.0.1:8080/v1/reports")
TOKEN = "token-of-this-job"


def contract_names() -> set[str]:
    return {
        value
        for name, value in vars(contract).items()
        if name.isupper() and isinstance(value, str) and re.fullmatch(r"[A-Z][A-Z_]*", value)
    }


class Secrets:
    """An ObjectSource holding the job's report-token Secret, as the builder makes it."""

    def __init__(self, job: TrainingJob) -> None:
        secret = build_report_token_secret(job, TOKEN)
        self.data = {key: base64.b64decode(value) for key, value in secret["data"].items()}
        self.name = secret["metadata"]["name"]

    def config_map(self, namespace: str, name: str) -> ConfigMapData | None:
        return None

    def secret(self, namespace: str, name: str) -> Mapping[str, bytes] | None:
        return self.data if (namespace, name) == ("ml", self.name) else None


def resolved_env(job: TrainingJob, index: int, attempt: int = 0) -> dict[str, str]:
    pod = build_worker_pod(job, index, attempt, SETTINGS)
    container = pod["spec"]["containers"][0]
    return resolve_env(pod, container, source=Secrets(job), pod_ip="10.1.0.5", host_ip="10.0.0.2")


FULL_SPEC: dict[str, Any] = {
    "replicas": 2,
    "gpusPerReplica": 2,
    "trainer": {"config": {"epochs": 2, "batchSize": 32}, "env": [{"name": "NCCL_DEBUG", "value": "INFO"}]},
    "checkpoint": {"size": "1Gi", "mountPath": "/ckpt", "intervalEpochs": 2},
}


def test_builder_sets_only_contract_names() -> None:
    names = contract_names()
    assert names >= OPERATOR_ENV_NAMES
    assert names >= RESERVED_ENV_NAMES
    env = build_worker_pod(make_job(FULL_SPEC), 0, 0, SETTINGS)["spec"]["containers"][0]["env"]
    operator_set = [var["name"] for var in env if var["name"] != "NCCL_DEBUG"]
    assert set(operator_set) <= names


@pytest.mark.parametrize(
    ("replicas", "gpus", "processes"),
    [(1, 0, None), (3, 0, None), (2, 4, None), (2, 4, 2), (2, 0, 3)],
)
def test_trainer_reads_back_the_distributed_layout(replicas: int, gpus: int, processes: int | None) -> None:
    job = make_job({"replicas": replicas, "gpusPerReplica": gpus, "processesPerReplica": processes})
    world = job.spec.world_size
    ranks: list[int] = []
    for index in range(replicas):
        env = resolved_env(job, index)
        plan = launch.plan_launch(env)
        workers = plan.worker_envs if plan.spawn else (plan.in_process_env or {},)
        assert len(workers) == job.spec.effective_processes_per_replica
        for local_rank, worker in enumerate(workers):
            merged = {**env, **worker}
            assert merged[contract.WORLD_SIZE] == str(world)
            assert merged[contract.LOCAL_RANK] == str(local_rank)
            assert merged[contract.LOCAL_WORLD_SIZE] == str(len(workers))
            assert merged[contract.MASTER_ADDR] == "mnist-0.mnist.ml.svc"
            assert merged[contract.MASTER_PORT] == str(SETTINGS.master_port)
            ranks.append(int(merged[contract.RANK]))
    assert sorted(ranks) == list(range(world))
    # Global rank 0 lives on replica 0, the pod MASTER_ADDR names.
    first = launch.plan_launch(resolved_env(job, 0))
    first_env = (first.worker_envs or (first.in_process_env or {},))[0]
    assert first_env[contract.RANK] == "0"


def test_trainer_reads_back_config_checkpoint_report_and_identity() -> None:
    job = make_job(FULL_SPEC)
    env = resolved_env(job, 1, attempt=3)
    config, sources = load_config(None, env)
    assert config == job.spec.trainer.config
    assert sources == [contract.CONFIG_JSON]
    settings = runtime_settings(env, config=config)
    assert str(settings.checkpoint_dir) == "/ckpt"
    assert settings.checkpoint_interval_epochs == 2
    assert settings.report_url == SETTINGS.report_url
    assert settings.report_token == TOKEN
    assert settings.metrics_port == contract.DEFAULT_METRICS_PORT
    assert (settings.job_name, settings.job_namespace) == ("mnist", "ml")
    assert settings.attempt == 3  # from the pod's attempt label, so reports can be ordered by attempt
    assert read_job_environment(env).attempt == 3  # custom code's client reads the same variable
    assert env["NCCL_DEBUG"] == "INFO"


def test_single_process_pod_is_a_worker_of_its_own() -> None:
    """One process per pod: the pod's env already carries RANK, and the launcher runs in-process."""
    job = make_job({"replicas": 4})
    env = resolved_env(job, 3)
    plan = launch.plan_launch(env)
    assert not plan.spawn
    assert plan.in_process_env is not None
    assert plan.in_process_env[contract.RANK] == env[contract.RANK] == "3"
