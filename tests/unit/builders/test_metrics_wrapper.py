"""The metrics wrapper in a replica pod: what `spec.trainer.metrics` changes, and nothing else.

Pins:
- the trainer container's command becomes `python3 /opt/trainsmart/client/trainsmart-client.pyz wrap
  <flags> -- <command>`, with one flag per field of the metrics block (keyValue spelled `kv`; no format:
  `--no-stdout-metrics`, since the wrapper parses JSON lines by default); the
  user's args stay in `args`, after the `--`; every replica runs the same command (rank 0 reports);
- the real wrapper's command line parser reads those flags back as meant, and the user's command and
  args as the command to run; the ConfigMap key is the client's own zipapp file name;
- the job's ConfigMap `<job>-trainsmart-client` carries the given zipapp bytes as binaryData, immutable
  and owned by the job; the pod mounts it read-only at /opt/trainsmart/client under a reserved name;
- PYTHONPATH is the zipapp unless the user's env sets PYTHONPATH, which is then kept as written, once;
- the pod keeps the restricted security defaults (read-only root filesystem included);
- a sweep trial's wrapper is told the sweep's objective (`--objective`, from the trial's annotation), so
  the final result's per-epoch history is the objective's;
- a job without metrics gets the pod it got before: its own command, no client volume, no PYTHONPATH.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from support.models import make_job
from trainsmart.api import TrainingJob
from trainsmart.builders import build_worker_pod, owner_reference
from trainsmart.builders.metrics_wrapper import CLIENT_ZIPAPP_PATH, build_client_configmap
from trainsmart.names import OBJECTIVE_METRIC_ANNOTATION
from trainsmart.settings import OperatorSettings
from trainsmart_client.bundle import BUNDLE_FILE_NAME
from trainsmart_client.wrap_command import build_argument_parser

SETTINGS = OperatorSettings(report_url="http://trainsmart.trainsmart-system.svc:8080/v1/reports")
COMMAND = ["python3", "/scripts/train.py"]
ARGS = ["--lr", "0.01"]
ZIPAPP = b"PK\x03\x04 a zipapp's bytes \x00\xff"
WRAP = ["python3", "/opt/trainsmart/client/trainsmart-client.pyz", "wrap"]


def custom_job(metrics: dict[str, Any] | None = None, env: list[dict[str, str]] | None = None) -> TrainingJob:
    trainer: dict[str, Any] = {"command": COMMAND, "args": ARGS, "env": env or []}
    if metrics is not None:
        trainer["metrics"] = metrics
    return make_job({"replicas": 2, "trainer": trainer})


def trainer_of(pod: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = pod["spec"]["containers"][0]
    assert container["name"] == "trainer"
    return container


def env_values(pod: dict[str, Any], name: str) -> list[Any]:
    return [var.get("value") for var in trainer_of(pod)["env"] if var["name"] == name]


@pytest.mark.parametrize(
    ("metrics", "flags"),
    [
        ({"format": "json"}, ["--format", "json"]),
        ({"format": "keyValue", "epochKey": "ep"}, ["--format", "kv", "--epoch-key", "ep"]),
        (
            {"format": "regex", "pattern": r"epoch (?P<epoch>\d+) acc (?P<acc>\S+)"},
            ["--format", "regex", "--pattern", r"epoch (?P<epoch>\d+) acc (?P<acc>\S+)"],
        ),
        ({"tensorboardDir": "/tmp/tb"}, ["--no-stdout-metrics", "--tensorboard-dir", "/tmp/tb"]),
        ({"format": "json", "tensorboardDir": "runs"}, ["--format", "json", "--tensorboard-dir", "runs"]),
    ],
)
def test_the_command_runs_under_the_wrapper_with_one_flag_per_field(metrics: dict[str, Any], flags: list[str]) -> None:
    pods = [build_worker_pod(custom_job(metrics), index, 0, SETTINGS) for index in (0, 1)]
    for pod in pods:
        assert trainer_of(pod)["command"] == [*WRAP, *flags, "--", *COMMAND]
        assert trainer_of(pod)["args"] == ARGS
    assert trainer_of(pods[0])["command"] == trainer_of(pods[1])["command"]


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        ({"format": "json"}, {"format": "json", "no_stdout_metrics": False, "tensorboard_dir": None}),
        ({"format": "keyValue", "epochKey": "ep"}, {"format": "kv", "epoch_key": "ep"}),
        ({"format": "regex", "pattern": r"e=(?P<epoch>\d+)"}, {"format": "regex", "pattern": r"e=(?P<epoch>\d+)"}),
        ({"tensorboardDir": "runs"}, {"no_stdout_metrics": True, "tensorboard_dir": Path("runs")}),
    ],
)
def test_the_wrapper_reads_the_flags_back_as_meant(metrics: dict[str, Any], expected: dict[str, Any]) -> None:
    container = trainer_of(build_worker_pod(custom_job(metrics), 0, 0, SETTINGS))
    argv = container["command"] + container["args"]
    assert argv[:2] == ["python3", f"/opt/trainsmart/client/{BUNDLE_FILE_NAME}"]
    parsed = build_argument_parser().parse_args(argv[2:])
    assert parsed.subcommand == "wrap"
    assert {key: getattr(parsed, key) for key in expected} == expected
    assert [arg for arg in parsed.command if arg != "--"] == [*COMMAND, *ARGS]


def test_the_client_configmap_carries_the_zipapp_immutable_and_owned_by_the_job() -> None:
    job = custom_job({"format": "json"})
    configmap = build_client_configmap(job, ZIPAPP)
    assert configmap["apiVersion"] == "v1" and configmap["kind"] == "ConfigMap"
    assert configmap["metadata"]["name"] == "mnist-trainsmart-client"
    assert configmap["metadata"]["namespace"] == "ml"
    assert configmap["metadata"]["ownerReferences"] == [owner_reference(job)]
    assert configmap["immutable"] is True
    assert "data" not in configmap
    assert base64.b64decode(configmap["binaryData"]["trainsmart-client.pyz"]) == ZIPAPP
    assert configmap == build_client_configmap(job, ZIPAPP)
    with pytest.raises(ValueError, match="empty"):
        build_client_configmap(job, b"")


def test_the_pod_mounts_the_client_configmap_read_only_where_the_command_points() -> None:
    job = custom_job({"format": "json"})
    pod = build_worker_pod(job, 0, 0, SETTINGS)
    volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
    configmap = build_client_configmap(job, ZIPAPP)
    assert volumes["trainsmart-client"] == {
        "name": "trainsmart-client",
        "configMap": {"name": configmap["metadata"]["name"]},
    }
    mounts = {mount["name"]: mount for mount in trainer_of(pod)["volumeMounts"]}
    mount = mounts["trainsmart-client"]
    assert mount["readOnly"] is True
    key = next(iter(configmap["binaryData"]))
    assert f"{mount['mountPath']}/{key}" == CLIENT_ZIPAPP_PATH == trainer_of(pod)["command"][1]


def test_pythonpath_is_the_zipapp_unless_the_user_sets_it() -> None:
    pod = build_worker_pod(custom_job({"format": "json"}), 0, 0, SETTINGS)
    assert env_values(pod, "PYTHONPATH") == [CLIENT_ZIPAPP_PATH]
    own = [{"name": "PYTHONPATH", "value": "/app/src"}]
    pod = build_worker_pod(custom_job({"format": "json"}, env=own), 0, 0, SETTINGS)
    assert env_values(pod, "PYTHONPATH") == ["/app/src"]


def test_the_wrapped_pod_keeps_the_restricted_security_defaults() -> None:
    plain = build_worker_pod(custom_job(), 0, 0, SETTINGS)
    wrapped = build_worker_pod(custom_job({"format": "json"}), 0, 0, SETTINGS)
    assert wrapped["spec"]["securityContext"] == plain["spec"]["securityContext"]
    assert trainer_of(wrapped)["securityContext"] == trainer_of(plain)["securityContext"]
    assert trainer_of(wrapped)["securityContext"]["readOnlyRootFilesystem"] is True
    assert trainer_of(wrapped)["securityContext"]["allowPrivilegeEscalation"] is False


def test_a_job_without_metrics_gets_its_own_command_and_no_client() -> None:
    pod = build_worker_pod(custom_job(), 0, 0, SETTINGS)
    assert trainer_of(pod)["command"] == COMMAND
    assert trainer_of(pod)["args"] == ARGS
    assert "trainsmart-client" not in {volume["name"] for volume in pod["spec"]["volumes"]}
    assert "trainsmart-client" not in {mount["name"] for mount in trainer_of(pod)["volumeMounts"]}
    assert env_values(pod, "PYTHONPATH") == []
    wrapped = build_worker_pod(custom_job({"format": "json"}), 0, 0, SETTINGS)
    differing = {key for key in trainer_of(pod) if trainer_of(pod)[key] != trainer_of(wrapped)[key]}
    assert differing == {"command", "env", "volumeMounts"}


def test_a_sweep_trial_tells_the_wrapper_its_objective() -> None:
    trial = custom_job({"format": "json"})
    trial = trial.model_copy(
        update={"metadata": {**trial.metadata, "annotations": {OBJECTIVE_METRIC_ANNOTATION: "val_accuracy"}}}
    )
    command = trainer_of(build_worker_pod(trial, 0, 0, SETTINGS))["command"]
    assert command == [*WRAP, "--objective", "val_accuracy", "--format", "json", "--", *COMMAND]
    args = build_argument_parser().parse_args(command[2:] + ARGS)
    assert args.objective == "val_accuracy"
    plain = trainer_of(build_worker_pod(custom_job({"format": "json"}), 0, 0, SETTINGS))["command"]
    assert "--objective" not in plain
