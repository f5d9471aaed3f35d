"""The manifests under examples/ are what users apply first, so they must be right without a cluster.

Pins:
- every file parses as YAML, every trainsmart object parses with the models and passes admission unchanged;
- no example sets a namespace (they are applied with `kubectl -n`), and names are unique across files;
- each documented feature the examples promise is shown somewhere (DDP on GPUs with an operator-created
  checkpoint PVC, a custom command, a data volume with tabular CSV, Kueue + suspend, TPE + ASHA, grid;
  TTL and deadline, pod template overrides, an existing checkpoint claim, exit codes, random + median,
  budgets, and the folder of jobs the Argo CD example syncs);
- a sweep's trials would themselves pass admission (their names fit with the template's replicas).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from support.paths import REPO
from trainsmart.admission.rules import validate_sweep, validate_trainingjob
from trainsmart.api import HyperparamSweep, TrainingJob
from trainsmart.names import trial_name

EXAMPLES = REPO / "examples"
# examples/argocd/*.yaml are Argo CD Applications (their CRD is not ours; tests/unit/delivery/test_argocd_examples.py
# checks them); the folder of jobs one of them syncs is plain trainsmart objects, checked like the rest.
# examples/custom/: your own code (a script, its TrainingJob and sweep), checked like the rest.
FILES = (
    sorted(EXAMPLES.glob("*.yaml"))
    + sorted(EXAMPLES.glob("argocd/jobs/*.yaml"))
    + sorted(EXAMPLES.glob("custom/*.yaml"))
)


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def trainsmart_objects() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{path.name}:{doc['metadata']['name']}", doc)
        for path in FILES
        for doc in documents(path)
        if doc["apiVersion"].startswith("trainsmart.dev/")
    ]


def test_the_promised_examples_exist() -> None:
    names = {path.name for path in FILES}
    for required in (
        "trainingjob-minimal.yaml",
        "trainingjob-digits.yaml",
        "trainingjob-custom-command.yaml",
        "sweep-digits.yaml",
    ):
        assert required in names


@pytest.mark.parametrize(("label", "obj"), trainsmart_objects(), ids=[label for label, _ in trainsmart_objects()])
def test_example_parses_and_passes_admission(label: str, obj: dict[str, Any]) -> None:
    assert "namespace" not in obj["metadata"], label
    if obj["kind"] == "TrainingJob":
        TrainingJob.model_validate(obj)
        assert validate_trainingjob(obj) == []
    else:
        sweep = HyperparamSweep.model_validate(obj)
        assert validate_sweep(obj) == []
        last = trial_name(obj["metadata"]["name"], sweep.spec.planned_trials() - 1)
        trial = {"metadata": {"name": last}, "spec": sweep.spec.trial_template.to_api()}
        assert validate_trainingjob(trial) == []


def test_names_are_unique() -> None:
    keys = [(doc["kind"], doc["metadata"]["name"]) for path in FILES for doc in documents(path)]
    assert len(keys) == len(set(keys))


def by_name(name: str) -> dict[str, Any]:
    return next(obj for label, obj in trainsmart_objects() if label.endswith(f":{name}"))


def test_examples_cover_the_documented_features() -> None:
    digits = TrainingJob.model_validate(by_name("digits-ddp")).spec
    assert digits.replicas == 2 and digits.gpus_per_replica == 1 and digits.checkpoint is not None
    assert digits.checkpoint.size is not None
    config = digits.trainer.effective_config()
    assert (config.model.name, config.dataset.name, config.epochs) == ("cnn", "digits", 3)

    assert TrainingJob.model_validate(by_name("custom-command")).spec.trainer.command
    tabular = TrainingJob.model_validate(by_name("tabular-csv")).spec
    assert tabular.trainer.effective_config().dataset.name == "tabular-csv" and tabular.volume_mounts
    queued = TrainingJob.model_validate(by_name("queued-digits")).spec
    assert queued.queue_name and queued.suspend

    tpe = HyperparamSweep.model_validate(by_name("digits-tpe")).spec
    assert tpe.algorithm.name == "tpe" and tpe.parallel_trials > 1 and tpe.early_stopping.rule == "asha"
    assert tpe.resumes_promoted()
    grid = HyperparamSweep.model_validate(by_name("synthetic-grid")).spec
    assert grid.algorithm.name == "grid" and grid.planned_trials() == 9


def test_examples_cover_ttl_overrides_claims_exit_codes_random_and_budgets() -> None:
    queued = TrainingJob.model_validate(by_name("queued-digits")).spec
    assert queued.run_policy.ttl_seconds_after_finished and queued.run_policy.active_deadline_seconds
    overrides = TrainingJob.model_validate(by_name("template-overrides")).spec
    assert overrides.template.labels and overrides.template.security_context and overrides.template.init_containers
    assert overrides.checkpoint is not None and overrides.checkpoint.claim_name == "shared-checkpoints"
    assert overrides.run_policy.retryable_exit_codes and overrides.run_policy.permanent_exit_codes
    random = HyperparamSweep.model_validate(by_name("digits-random")).spec
    assert random.algorithm.name == "random" and random.early_stopping.rule == "median"
    assert random.budget is not None and random.budget.max_gpu_hours and random.budget.max_duration
    assert HyperparamSweep.model_validate(by_name("digits-tpe")).spec.budget is not None
    gitops = TrainingJob.model_validate(by_name("gitops-digits")).spec
    assert gitops.trainer.effective_config().dataset.name == "digits"


def test_the_tabular_data_is_a_configmap_in_the_same_file() -> None:
    docs = documents(EXAMPLES / "trainingjob-tabular-csv.yaml")
    configmap = next(doc for doc in docs if doc["kind"] == "ConfigMap")
    job = next(doc for doc in docs if doc["kind"] == "TrainingJob")
    assert job["spec"]["volumes"][0]["configMap"]["name"] == configmap["metadata"]["name"]
    header = configmap["data"]["train.csv"].splitlines()[0].split(",")
    assert job["spec"]["trainer"]["config"]["dataset"]["targetColumn"] in header
