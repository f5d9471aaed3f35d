"""The operator <-> trainer contract module.

Pins:
- the torchrun and classic torch.distributed names are spelled exactly as torch spells them;
- our variables are unique, prefixed, and documented (every constant has a docstring in the source);
- the simulated-GPU marker is the very name and value the node agent sets;
- exit codes are distinct and avoid 1, 2, 64-78, 126-165 and 255; retryable and permanent sets are disjoint;
- `trainsmart_trainer.contract` imports neither torch nor the operator (the operator imports it);
- the report schema round-trips through JSON, refuses NaN, and requires `final` exactly for kind final.
"""

from __future__ import annotations

import ast
import inspect
import json
import math
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from trainsmart.devcluster.agent import gpus as agent_gpus
from trainsmart_trainer import contract
from trainsmart_trainer.contract import (
    DeviceInfo,
    ExitCode,
    FinalResult,
    FinalStatus,
    JobIdentity,
    ReportKind,
    TrainerReport,
)


def env_constants() -> dict[str, str]:
    return {
        name: value
        for name, value in vars(contract).items()
        if name.isupper() and isinstance(value, str) and value.isupper() and "_" in value and value == value.strip()
    }


def test_torch_names_are_spelled_as_torch_reads_them() -> None:
    expected = [
        "PET_NNODES",
        "PET_NPROC_PER_NODE",
        "PET_NODE_RANK",
        "PET_MASTER_ADDR",
        "PET_MASTER_PORT",
        "MASTER_ADDR",
        "MASTER_PORT",
        "WORLD_SIZE",
        "RANK",
        "LOCAL_RANK",
        "LOCAL_WORLD_SIZE",
    ]
    for name in expected:
        assert getattr(contract, name) == name


def test_our_variables_are_unique_and_prefixed() -> None:
    ours = {name: value for name, value in env_constants().items() if value.startswith("TRAINSMART_")}
    assert len(set(ours.values())) == len(ours)
    for required in (
        "CONFIG_JSON",
        "CONFIG_PATH",
        "CHECKPOINT_DIR",
        "REPORT_URL",
        "REPORT_TOKEN",
        "METRICS_PORT",
        "RESULT_PATH",
        "TERMINATION_LOG",
        "JOB_NAME",
        "JOB_NAMESPACE",
        "ATTEMPT",
        "SIMULATED_GPUS",
    ):
        assert required in ours, required


def test_every_variable_is_documented() -> None:
    """Each `NAME: Final = "..."` is followed by a string literal: the docstring the operator's docs render."""
    tree = ast.parse(inspect.getsource(contract))
    body = tree.body
    undocumented = []
    for index, node in enumerate(body):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            value = node.value
            if not (isinstance(value, ast.Constant) and isinstance(value.value, str) and value.value.isupper()):
                continue
            following = body[index + 1] if index + 1 < len(body) else None
            documented = isinstance(following, ast.Expr) and isinstance(getattr(following, "value", None), ast.Constant)
            if not documented:
                undocumented.append(node.target.id)
    assert undocumented == []


def test_simulated_gpu_marker_matches_the_node_agent() -> None:
    assert contract.SIMULATED_GPUS == agent_gpus.SIMULATED_GPUS_ENV
    assert agent_gpus.gpu_env([0])[contract.SIMULATED_GPUS] == contract.SIMULATED_GPUS_ON
    assert contract.NVIDIA_VISIBLE_DEVICES in agent_gpus.gpu_env([0])


def test_exit_codes_avoid_conventional_meanings() -> None:
    values = [code.value for code in ExitCode]
    assert len(set(values)) == len(values)
    assert ExitCode.SUCCESS == 0
    reserved = {1, 2, 255} | set(range(64, 79)) | set(range(126, 166))
    assert not (set(values) & reserved)
    assert not (contract.RETRYABLE_EXIT_CODES & contract.PERMANENT_EXIT_CODES)
    assert ExitCode.TERMINATED in contract.RETRYABLE_EXIT_CODES
    assert ExitCode.PERMANENT_FAILURE in contract.PERMANENT_EXIT_CODES


def test_contract_imports_neither_torch_nor_the_operator() -> None:
    code = (
        "import sys, trainsmart_trainer.contract; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'numpy', 'trainsmart'}); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def report(**overrides: object) -> TrainerReport:
    fields: dict[str, object] = {
        "job": JobIdentity(namespace="ns", name="job", rank=0, world_size=2),
        "kind": ReportKind.EPOCH,
        "time": datetime(2026, 1, 1, tzinfo=UTC),
        "epoch": 3,
        "total_epochs": 10,
        "metrics": {"val_loss": 0.5},
        "device": DeviceInfo(type="cpu", simulated_gpus=True, gpus=2),
    }
    fields.update(overrides)
    return TrainerReport.model_validate(fields)


def test_report_round_trips_through_camel_case_json() -> None:
    original = report()
    wire = json.loads(original.model_dump_json(by_alias=True, exclude_none=True))
    assert wire["totalEpochs"] == 10 and wire["device"]["simulatedGpus"] is True
    assert TrainerReport.model_validate(wire) == original


def test_report_rejects_nan_and_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        report(metrics={"val_loss": math.nan})
    wire = json.loads(report().model_dump_json(by_alias=True))
    wire["surprise"] = 1
    with pytest.raises(ValidationError):
        TrainerReport.model_validate(wire)


def test_final_is_required_exactly_for_final_reports() -> None:
    final = FinalResult(status=FinalStatus.SUCCEEDED, exit_code=0)
    assert report(kind=ReportKind.FINAL, final=final).final == final
    with pytest.raises(ValidationError, match="final is required"):
        report(kind=ReportKind.FINAL)
    with pytest.raises(ValidationError, match="final is required"):
        report(kind=ReportKind.PROGRESS, final=final)


def test_report_schema_is_generated() -> None:
    schema = TrainerReport.model_json_schema(by_alias=True)
    assert {"job", "kind", "totalEpochs", "device"} <= set(schema["required"])
