"""Lightning's own `WandbLogger` under the W&B identity the operator gives a job (docs/tracking.md's claim
that the framework integration needs no W&B code of ours), in W&B's offline mode, read back from the
run's own `.wandb` file.

Pins:
- a `WandbLogger()` built with no arguments, in a trial's pod environment as `builders.env.wandb_env` writes
  it (WANDB_RUN_ID, WANDB_NAME, WANDB_RUN_GROUP, WANDB_RESUME=allow) next to the user's WANDB_MODE=offline,
  writes a run whose id, name and group are the operator's, with the model's logged metrics in its history.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import wandb

from support.framework_models import lightning_classifier, point_loaders
from support.manifests import trainingjob_body
from support.wandb_records import item_key, read_records
from trainsmart.api import TrainingJob
from trainsmart.builders.env import wandb_env
from trainsmart.names import SWEEP_NAME_LABEL

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*treespec, LeafSpec.*:FutureWarning",
    # Lightning's WandbLogger on a 1-epoch toy model: a few batches per epoch and few DataLoader workers.
    "ignore:.*does not have many workers.*",
    "ignore:.*log_every_n_steps.*",
)
UID = "0b9e5d1c-2f4a-4c6b-9d8e-7a1f3c5e2b40"


def operator_identity() -> dict[str, str]:
    """The W&B variables the operator puts into a trial's pod (the user's WANDB_MODE=offline asks for W&B)."""
    spec = {"trainer": {"env": [{"name": "WANDB_MODE", "value": "offline"}]}}
    job = TrainingJob.model_validate(trainingjob_body("tune-3", spec, uid=UID, labels={SWEEP_NAME_LABEL: "tune"}))
    return {var["name"]: var["value"] for var in wandb_env(job)}


@pytest.fixture
def pod_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The operator's identity, W&B offline, everything it writes under tmp_path (also the working
    directory, where `WandbLogger()` puts its save_dir by default)."""
    for name in ("WANDB_API_KEY", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_BASE_URL", "WANDB_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    identity = operator_identity()
    for name, value in {
        **identity,
        "WANDB_MODE": "offline",
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
        "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
        "WANDB_DATA_DIR": str(tmp_path / "wandb-data"),
        "WANDB_SILENT": "true",
        # wandb-core is a service process; on a loaded 2-core machine its start can pass the 30 s default
        "WANDB__SERVICE_WAIT": "120",
    }.items():
        monkeypatch.setenv(name, value)
    yield identity
    wandb.teardown()


def test_lightnings_wandb_logger_takes_the_operators_run_identity(pod_env: dict[str, str], tmp_path: Path) -> None:
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import WandbLogger

    assert pod_env["WANDB_RESUME"] == "allow" and pod_env["WANDB_RUN_GROUP"] == "tune"
    run_id = pod_env["WANDB_RUN_ID"]
    trainer = pl.Trainer(
        max_epochs=1,
        logger=WandbLogger(),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        accelerator="cpu",
        devices=1,
    )
    train, val = point_loaders()
    trainer.fit(lightning_classifier(), train, val)
    wandb.finish()

    [run_file] = tmp_path.glob(f"**/offline-run-*-{run_id}/run-{run_id}.wandb")
    records = read_records(run_file)
    [run] = [record.run for record in records if record.HasField("run")]
    assert (run.run_id, run.display_name, run.run_group) == (run_id, "tune-3", "tune")
    assert run_id == UID.replace("-", "")
    logged = {
        item_key(item): json.loads(item.value_json)
        for record in records
        if record.HasField("history")
        for item in record.history.item
    }
    assert {"val_loss", "val_accuracy", "train_loss_epoch"} <= logged.keys()
