"""`support.podman_pod`: the operator's own pod manifests turned into `podman run`, the contract kept.

Pins:
- the packaged trainer's pod: the image replaced by the local tag, the command as the entrypoint, every
  contract variable with its value (downward-API fields from the pod's metadata, the report token decoded
  from the job's Secret), `$(VAR)` references expanded as Kubernetes does;
- the security context becomes uid:gid, fsGroup as a supplementary group, a read-only root without
  podman's own writable tmpfs mounts, no-new-privileges, every capability dropped, the default seccomp;
- volumes: /tmp an emptyDir host directory, /dev/shm a tmpfs, the checkpoint claim the directory given for
  it, the termination message path a bind-mounted host file; the grace period becomes the stop timeout;
- the wrapped path: the client ConfigMap's binaryData becomes a read-only file at the zipapp's path;
- `prepare()` makes the directories writable, writes the ConfigMap files and an empty termination log;
- whatever cannot be honoured is refused, naming the field: a missing claim, Secret or ConfigMap, an
  unknown image, a GPU limit, a second container, a probe, a hostPath volume, an unset runAsUser, an
  unknown field anywhere.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest

from support.models import make_job
from support.podman_pod import PodmanRun, UnsupportedPodError, podman_run
from trainsmart.builders import build_worker_pod
from trainsmart.builders.metrics_wrapper import CLIENT_ZIPAPP_KEY, CLIENT_ZIPAPP_PATH, build_client_configmap
from trainsmart.names import checkpoint_claim_name, client_configmap_name, report_secret_name
from trainsmart.settings import DEFAULT_TRAINER_IMAGE, OperatorSettings

SETTINGS = OperatorSettings(report_url="http://127.0.0.1:8080/v1/reports")
LOCAL = "localhost/trainer:test"
TOKEN = "s3cret-token"
SECRETS = {report_secret_name("mnist"): {"data": {"token": base64.b64encode(TOKEN.encode()).decode()}}}
ZIPAPP = b"PK\x03\x04 the client zipapp \x00\xff"


def packaged_pod(**spec: Any) -> dict[str, Any]:
    job = make_job({"checkpoint": {"size": "1Gi"}, "trainer": {"config": {"epochs": 2}}, **spec})
    pod = build_worker_pod(job, 0, 0, SETTINGS)
    pod["metadata"]["namespace"] = "ml"  # the apiserver fills it in
    return pod


def plan_of(pod: dict[str, Any], tmp_path: Path, **overrides: Any) -> PodmanRun:
    options: dict[str, Any] = {
        "name": "c1",
        "images": {DEFAULT_TRAINER_IMAGE: LOCAL},
        "host_dir": tmp_path / "pod",
        "claims": {checkpoint_claim_name("mnist"): tmp_path / "claim"},
        "secrets": SECRETS,
        **overrides,
    }
    return podman_run(pod, **options)


def flag_values(argv: tuple[str, ...], flag: str) -> list[str]:
    return [value for name, value in itertools.pairwise(argv) if name == flag]


def env_of(argv: tuple[str, ...]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in flag_values(argv, "--env"))


def test_packaged_trainer_pod_image_command_and_env(tmp_path: Path) -> None:
    pod = packaged_pod(
        trainer={"config": {"epochs": 2}, "env": [{"name": "WHERE", "value": "$(TRAINSMART_NAMESPACE)/x"}]}
    )
    argv = plan_of(pod, tmp_path).argv
    assert argv[:5] == ("podman", "run", "--detach", "--name", "c1")
    assert argv[-1] == LOCAL  # no args: the command is the whole process
    assert json.loads(flag_values(argv, "--entrypoint")[0]) == ["python", "-m", "trainsmart_trainer"]
    assert flag_values(argv, "--network") == ["host"]
    env = env_of(argv)
    assert env["TRAINSMART_JOB_NAME"] == "mnist"
    assert env["TRAINSMART_NAMESPACE"] == "ml"
    assert env["TRAINSMART_REPORT_TOKEN"] == TOKEN
    assert env["TRAINSMART_REPORT_URL"] == "http://127.0.0.1:8080/v1/reports"
    assert env["TRAINSMART_CHECKPOINT_DIR"] == "/checkpoints"
    assert json.loads(env["TRAINSMART_CONFIG"]) == {"epochs": 2}
    assert (env["RANK"], env["WORLD_SIZE"]) == ("0", "1")
    assert env["WHERE"] == "ml/x"
    names = [var["name"] for var in pod["spec"]["containers"][0]["env"]]
    assert sorted(env) == sorted(names)  # every variable, nothing added


def test_security_context_becomes_podman_flags(tmp_path: Path) -> None:
    argv = plan_of(packaged_pod(), tmp_path).argv
    assert flag_values(argv, "--user") == ["1000:1000"]
    assert flag_values(argv, "--group-add") == ["1000"]
    assert "--read-only" in argv and "--read-only-tmpfs=false" in argv
    assert flag_values(argv, "--security-opt") == ["no-new-privileges"]  # seccomp: podman's default profile
    assert flag_values(argv, "--cap-drop") == ["all"]
    assert flag_values(argv, "--stop-timeout") == ["120"]


def test_a_writable_root_and_another_uid_from_the_template(tmp_path: Path) -> None:
    pod = packaged_pod(
        template={"securityContext": {"runAsUser": 2000}, "containerSecurityContext": {"readOnlyRootFilesystem": False}}
    )
    argv = plan_of(pod, tmp_path).argv
    assert flag_values(argv, "--user") == ["2000:1000"]
    assert "--read-only" not in argv


def test_volumes_and_termination_message(tmp_path: Path) -> None:
    plan = plan_of(packaged_pod(), tmp_path)
    volumes = flag_values(plan.argv, "--volume")
    assert f"{tmp_path}/pod/volumes/trainsmart-tmp:/tmp:rw" in volumes
    assert f"{tmp_path}/claim:/checkpoints:rw" in volumes
    assert f"{plan.termination_log}:/dev/termination-log:rw" in volumes
    assert flag_values(plan.argv, "--mount") == ["type=tmpfs,destination=/dev/shm,tmpfs-mode=1777"]
    assert plan.directories == (tmp_path / "pod" / "volumes" / "trainsmart-tmp",)
    assert set(plan.group_owned) == {tmp_path / "pod" / "volumes" / "trainsmart-tmp", tmp_path / "claim"}
    assert plan.termination_message_policy == "FallbackToLogsOnError"


def test_wrapped_pod_gets_the_zipapp_from_the_configmap(tmp_path: Path) -> None:
    job = make_job(
        {"trainer": {"image": "team/train:1", "command": ["python3", "t.py"], "metrics": {"format": "json"}}}
    )
    pod = build_worker_pod(job, 0, 0, SETTINGS)
    pod["metadata"]["namespace"] = "ml"
    config_map = build_client_configmap(job, ZIPAPP)
    plan = plan_of(
        pod,
        tmp_path,
        images={"team/train:1": "localhost/train:1"},
        config_maps={client_configmap_name("mnist"): config_map},
    )
    root = tmp_path / "pod" / "volumes" / "trainsmart-client"
    assert plan.files == {root / CLIENT_ZIPAPP_KEY: (ZIPAPP, 0o644)}
    assert f"{root}:{CLIENT_ZIPAPP_PATH.rsplit('/', 1)[0]}:ro" in flag_values(plan.argv, "--volume")
    assert json.loads(flag_values(plan.argv, "--entrypoint")[0])[:3] == ["python3", CLIENT_ZIPAPP_PATH, "wrap"]
    assert env_of(plan.argv)["PYTHONPATH"] == CLIENT_ZIPAPP_PATH
    plan.prepare()
    assert (root / CLIENT_ZIPAPP_KEY).read_bytes() == ZIPAPP
    assert plan.termination_log.read_bytes() == b""


@pytest.mark.skipif(os.geteuid() != 0, reason="prepare() hands the volumes to fsGroup, which takes root")
def test_prepare_makes_the_volumes_writable_for_the_pod(tmp_path: Path) -> None:
    plan = plan_of(packaged_pod(), tmp_path)
    (tmp_path / "claim").mkdir()
    plan.prepare()
    tmp_dir = tmp_path / "pod" / "volumes" / "trainsmart-tmp"
    assert tmp_dir.stat().st_mode & 0o777 == 0o777
    claim = (tmp_path / "claim").stat()
    assert claim.st_gid == 1000 and claim.st_mode & 0o2070 == 0o2070
    assert plan.termination_log.stat().st_mode & 0o777 == 0o666


def _edit(pod: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    edited = copy.deepcopy(pod)
    *parents, last = path.split(".")
    node: Any = edited
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    node[last] = value
    return edited


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("spec.containers.0.resources", {"limits": {"nvidia.com/gpu": "1"}}, "nvidia.com/gpu"),
        ("spec.containers.0.livenessProbe", {"exec": {"command": ["true"]}}, "livenessProbe"),
        ("spec.containers.0.envFrom", [{"secretRef": {"name": "x"}}], "envFrom"),
        ("spec.volumes", [{"name": "h", "hostPath": {"path": "/"}}], "hostPath"),
        ("spec.hostPID", True, "hostPID"),
        ("spec.restartPolicy", "OnFailure", "restartPolicy"),
        ("spec.securityContext", {"runAsNonRoot": True}, "runAsUser"),
        ("spec.securityContext", {"runAsUser": 0, "runAsNonRoot": True}, "runAsNonRoot"),
        ("spec.containers.0.securityContext", {"privileged": True}, "privileged"),
        ("spec.containers.0.image", "elsewhere/trainer:1", "no local image"),
        ("spec.automountServiceAccountToken", True, "automountServiceAccountToken"),
    ],
)
def test_what_cannot_be_honoured_is_refused(tmp_path: Path, path: str, value: Any, message: str) -> None:
    with pytest.raises(UnsupportedPodError, match=message):
        plan_of(_edit(packaged_pod(), path, value), tmp_path)


def test_a_second_container_missing_objects_are_refused(tmp_path: Path) -> None:
    pod = packaged_pod()
    with pytest.raises(UnsupportedPodError, match="exactly one container"):
        plan_of(_edit(pod, "spec.containers", pod["spec"]["containers"] * 2), tmp_path)
    with pytest.raises(UnsupportedPodError, match="claim"):
        plan_of(pod, tmp_path, claims={})
    with pytest.raises(UnsupportedPodError, match="token"):
        plan_of(pod, tmp_path, secrets={})
    job = make_job({"trainer": {"command": ["python3", "t.py"], "metrics": {"format": "json"}}})
    wrapped = build_worker_pod(job, 0, 0, SETTINGS)
    wrapped["metadata"]["namespace"] = "ml"
    with pytest.raises(UnsupportedPodError, match="ConfigMap"):
        plan_of(wrapped, tmp_path)
