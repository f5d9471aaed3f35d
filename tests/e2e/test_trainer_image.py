"""The trainer image (trainer_image/Dockerfile), built for real with buildah and run with podman as the
pods the operator creates, against the real operator; and a python3-only user image under the wrapper.

Docker Hub is not reachable on the build machines, so `BASE_IMAGE` is a local Debian bookworm made with
mmdebstrap: python3, python3-pip and python-is-python3 (what the Dockerfile needs of its base: bash,
useradd, `python` with pip) for the trainer; python3 alone for the user image, standing in for
python:3.11-slim. torch is the pinned CPU wheel (`INSTALL_TORCH=1`): from the host's wheel directory
where it has one (`PIP_FIND_LINKS`, mounted read-only into the build), else from PyTorch's CPU index.

The pods run under podman, not the local cluster's node agent: each job names a scheduler nobody runs
(`schedulerName`), so its pods stay Pending and unbound, and the test plays the scheduler and the kubelet:
it reads the pod the operator created back from the apiserver, turns it into `podman run` with
`support.podman_pod` (uid, read-only root, capabilities, volumes, env with the report token from the
job's Secret, termination message file; host network, so the session operator's report endpoint is
reachable), runs it, and writes the pod's status as a kubelet would (Running, then terminated with the
exit code and the termination message).

Pins:
- the image: numeric non-root USER, entrypoint `python -m trainsmart_trainer`, torch 2.13.0 (CPU), no
  compiler and no pip cache in the final stage;
- the packaged trainer from the image, run as the operator's pod: exits 0, leaves a checkpoint per epoch
  and the result in the checkpoint volume, writes its final result (the contract's FinalResult) as the
  termination message, writes nothing outside its volumes (`podman diff` of the read-only root), and the
  operator folds its reports into the job's status (progress and metrics) before the pod's end is seen;
  with the kubelet's final status the job Succeeds;
- SIGTERM mid-training (after the first epoch's report arrived): a checkpoint is written after the
  signal, the container exits 13 (TERMINATED) and says so in its termination message; the operator
  restarts the job, and the new pod it creates, run on the same checkpoint volume, resumes from that
  checkpoint (its epochs continue where the stopped run left off) and succeeds;
- a user image with only python3 and a stdlib script, as a job with `spec.trainer.metrics`: the operator
  wraps the command with the client zipapp from the job's ConfigMap; the pod exits 0, the operator gets
  the script's metrics as reports, and the termination message is the wrapper's final result.

Skipped, with the reason, where buildah, podman, runc or mmdebstrap are missing or not root;
`make test` installs them (scripts/install-image-tools.sh).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from support.images import base_image, build, in_image, missing_tools, remove_image, run
from support.kubeapi import create_job, get_job, job_pods, status_of
from support.manifests import FAST_DIGITS, ONE_THREAD_ENV, SLOW_DIGITS
from support.paths import REPO
from support.podman_pod import PodmanRun, podman_run
from support.trainer_process import final_result
from support.waiting import wait_for
from trainsmart.builders.metrics_wrapper import CLIENT_ZIPAPP_PATH
from trainsmart.names import ATTEMPT_LABEL, client_configmap_name, report_secret_name
from trainsmart.settings import DEFAULT_TRAINER_IMAGE
from trainsmart_trainer.contract import RESULT_FILE_NAME, ExitCode, FinalResult, FinalStatus

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(missing_tools() is not None, reason=missing_tools() or "")]

TRAINER_BASE_PACKAGES = ("python3", "python3-pip", "python-is-python3")
USER_BASE_PACKAGES = ("python3",)
TORCH_VERSION = "2.13.0"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
SCHEDULER = "podman-in-a-test"
"""No scheduler by this name runs: the operator's pods stay unbound, for this test to run them."""
CHECKPOINT_PATH = "/checkpoints"
EXAMPLES = REPO / "examples" / "custom"


def _wheel_directory() -> Path | None:
    """The host's local wheel directory holding the pinned torch, if it has one (PIP_FIND_LINKS)."""
    for entry in os.environ.get("PIP_FIND_LINKS", "").split():
        path = Path(entry.removeprefix("file://"))
        if path.is_dir() and any(path.glob(f"torch-{TORCH_VERSION}*.whl")):
            return path
    return None


@pytest.fixture(scope="module")
def trainer_image() -> Iterator[str]:
    tag = f"localhost/trainsmart-trainer-test:{os.getpid()}"
    args = {"BASE_IMAGE": base_image(TRAINER_BASE_PACKAGES), "INSTALL_TORCH": "1", "TORCH_VERSION": TORCH_VERSION}
    wheels = _wheel_directory()
    volumes: list[str] = []
    if wheels is not None:
        args["PIP_FIND_LINKS"] = "/run/wheels"
        volumes.append(f"{wheels}:/run/wheels:ro")
    else:
        args["TORCH_INDEX_URL"] = TORCH_CPU_INDEX
    seconds = build(REPO / "trainer_image" / "Dockerfile", REPO, tag, args, volumes)
    size = run("podman", "image", "inspect", "--format", "{{.Size}}", tag).strip()
    print(f"built {tag} in {seconds:.0f} s, {int(size) / 1e6:.0f} MB (torch from {wheels or TORCH_CPU_INDEX})")
    try:
        yield tag
    finally:
        remove_image(tag)


@pytest.fixture(scope="module")
def user_image() -> Iterator[str]:
    tag = f"localhost/trainsmart-fit-line-test:{os.getpid()}"
    seconds = build(EXAMPLES / "Dockerfile", EXAMPLES, tag, {"BASE_IMAGE": base_image(USER_BASE_PACKAGES)})
    print(f"built {tag} in {seconds:.0f} s")
    try:
        yield tag
    finally:
        remove_image(tag)


# ---- the image itself -----------------------------------------------------------------------------------------


def test_image_user_entrypoint_torch_and_no_build_leftovers(trainer_image: str) -> None:
    config = json.loads(run("podman", "image", "inspect", trainer_image))[0]["Config"]
    assert re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", config["User"]), config["User"]
    assert config["Entrypoint"] == ["python", "-m", "trainsmart_trainer"]
    version = in_image(trainer_image, "-c", "import torch; print(torch.__version__)", entrypoint="python")
    assert version.strip().split("+")[0] == TORCH_VERSION
    assert in_image(trainer_image, "--version").startswith("trainsmart-train ")
    script = (
        "for tool in gcc cc c++ g++ clang make; do command -v $tool && exit 1; done; "
        "test ! -e /root/.cache/pip && test ! -e /src && echo clean"
    )
    assert in_image(trainer_image, "-c", script, entrypoint="sh", user="0").strip() == "clean"


# ---- the operator's pods, run by podman ---------------------------------------------------------------------


class PodRunner:
    """Plays the scheduler and the kubelet for one job's pods: podman runs what the operator created."""

    def __init__(self, api: client.ApiClient, namespace: str, job: str, host_dir: Path, images: dict[str, str]):
        self.api, self.core = api, client.CoreV1Api(api)
        self.namespace, self.job, self.host_dir, self.images = namespace, job, host_dir, images
        self.checkpoints = host_dir / "checkpoint-claim"
        self.containers: list[str] = []

    def pod(self, attempt: int) -> dict[str, Any]:
        """The job's replica-0 pod of restart generation `attempt`, as the apiserver has it."""

        def find() -> Any:
            pods = [p for p in job_pods(self.api, self.namespace, self.job) if p.metadata.deletion_timestamp is None]
            return next((p for p in pods if p.metadata.labels.get(ATTEMPT_LABEL) == str(attempt)), None)

        pod = wait_for(find, 30, f"pod attempt {attempt} of {self.job}")
        manifest: dict[str, Any] = self.api.sanitize_for_serialization(pod)
        assert manifest["spec"]["schedulerName"] == SCHEDULER and not manifest["spec"].get("nodeName")
        return manifest

    def plan(self, pod: dict[str, Any], attempt: int) -> PodmanRun:
        # The operator creates the Secret before the pods (issue 13); waiting keeps the test honest either way.
        secret = wait_for(
            lambda: _read_secret(self.core, report_secret_name(self.job), self.namespace), 30, "the report-token Secret"
        )
        config_maps = {}
        for volume in pod["spec"]["volumes"]:
            if "configMap" in volume:
                name = volume["configMap"]["name"]
                config_maps[name] = self.api.sanitize_for_serialization(
                    self.core.read_namespaced_config_map(name, self.namespace)
                )
        claims = {
            v["persistentVolumeClaim"]["claimName"]: self.checkpoints
            for v in pod["spec"]["volumes"]
            if "persistentVolumeClaim" in v
        }
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        plan = podman_run(
            pod,
            name=f"{self.namespace}-{pod['metadata']['name']}-{attempt}",
            images=self.images,
            host_dir=self.host_dir / f"attempt-{attempt}",
            claims=claims,
            secrets={secret.metadata.name: {"data": secret.data}},
            config_maps=config_maps,
        )
        plan.prepare()
        return plan

    def start(self, pod: dict[str, Any], plan: PodmanRun) -> str:
        """Start the container and say so in the pod's status, as a kubelet does."""
        container = run(*plan.argv).strip()
        self.containers.append(container)
        now = datetime.now(UTC).isoformat()
        self._status(pod, "Running", {"running": {"startedAt": now}})
        return container

    def finish(self, pod: dict[str, Any], plan: PodmanRun, container: str) -> int:
        """Wait for the container's exit and write the terminated state with its termination message."""
        code = int(run("podman", "wait", container, timeout=300).strip())
        message = plan.termination_log.read_text()
        now = datetime.now(UTC).isoformat()
        terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error", "message": message}
        self._status(pod, "Succeeded" if code == 0 else "Failed", {"terminated": {**terminated, "finishedAt": now}})
        return code

    def logs(self, container: str) -> str:
        result = subprocess.run(["podman", "logs", container], capture_output=True, text=True, check=False)
        return result.stdout + result.stderr

    def _status(self, pod: dict[str, Any], phase: str, state: dict[str, Any]) -> None:
        container = pod["spec"]["containers"][0]
        status = {
            "phase": phase,
            "containerStatuses": [
                {
                    "name": container["name"],
                    "image": container["image"],
                    "imageID": "",
                    "ready": phase == "Running",
                    "restartCount": 0,
                    "state": state,
                }
            ],
        }
        self.core.patch_namespaced_pod_status(pod["metadata"]["name"], self.namespace, {"status": status})

    def remove(self) -> None:
        for container in self.containers:
            subprocess.run(["podman", "rm", "--force", container], capture_output=True, check=False)


@pytest.fixture
def runner(
    request: pytest.FixtureRequest, api_client: client.ApiClient, namespace: str, tmp_path: Path
) -> Iterator[Callable[[str, dict[str, str]], PodRunner]]:
    made: list[PodRunner] = []
    tmp_path.chmod(0o755)  # the container's uid reads the ConfigMap files below it

    def make(job: str, images: dict[str, str]) -> PodRunner:
        made.append(PodRunner(api_client, namespace, job, tmp_path / job, images))
        return made[-1]

    yield make
    for pod_runner in made:
        pod_runner.remove()


def _status_when(
    api: client.ApiClient, namespace: str, job: str, check: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        status = status_of(get_job(api, namespace, job))
        return status if check(status) else None

    return wait_for(probe, 180, what, lambda: json.dumps(status_of(get_job(api, namespace, job)), indent=1))


def _epochs_logged(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"epoch (\d+)/\d+:", text)]


def _written_outside_volumes(container: str, plan: PodmanRun) -> list[str]:
    """What the container changed in its root filesystem, less the mount points podman made for the
    volumes and for its own /etc/hosts, /etc/hostname and /etc/resolv.conf."""
    targets = {"/etc"}
    for flag, value in itertools.pairwise(plan.argv):
        if flag == "--volume":
            targets.add(value.split(":")[1])
        elif flag == "--mount":
            targets.add(dict(item.split("=", 1) for item in value.split(","))["destination"])
    allowed = {str(Path(t)) for target in targets for t in (target, *map(str, Path(target).parents))}
    changes = [line.split(maxsplit=1)[1] for line in run("podman", "diff", container).splitlines() if line.strip()]
    return [path for path in changes if path not in allowed]


def test_packaged_trainer_pod_trains_checkpoints_reports_and_ends(
    trainer_image: str, operator_process: Any, api_client: client.ApiClient, namespace: str, runner: Any
) -> None:
    spec = {
        "schedulerName": SCHEDULER,
        "checkpoint": {"size": "1Gi", "mountPath": CHECKPOINT_PATH, "intervalEpochs": 1},
        "trainer": {"config": {**FAST_DIGITS, "epochs": 2}, "env": ONE_THREAD_ENV},
    }
    create_job(api_client, namespace, "packaged", spec)
    pods: PodRunner = runner("packaged", {DEFAULT_TRAINER_IMAGE: trainer_image})
    pod = pods.pod(0)
    plan = pods.plan(pod, 0)
    container = pods.start(pod, plan)
    code = int(run("podman", "wait", container, timeout=300).strip())
    logs = pods.logs(container)
    assert code == ExitCode.SUCCESS, logs[-4000:]

    assert _epochs_logged(logs) == [1, 2]
    saved = sorted(path.name for path in pods.checkpoints.glob("checkpoint-*.pt"))
    assert saved == ["checkpoint-000001-0000000.pt", "checkpoint-000002-0000000.pt"], saved
    assert final_result(pods.checkpoints / RESULT_FILE_NAME)["epochsCompleted"] == 2
    message = FinalResult.model_validate_json(plan.termination_log.read_text())
    assert (message.status, message.exit_code, message.epochs_completed) == (FinalStatus.SUCCEEDED, 0, 2)
    assert message.metrics["val_accuracy"] > 0.5
    assert _written_outside_volumes(container, plan) == []

    # The reports alone: the pod's end is not in the apiserver yet.
    status = _status_when(
        api_client, namespace, "packaged", lambda s: (s.get("progress") or {}).get("epoch") == 2, "progress 2/2"
    )
    assert status["progress"]["totalEpochs"] == 2
    assert status["metrics"]["latest"]["val_accuracy"] == pytest.approx(message.metrics["val_accuracy"])

    assert pods.finish(pod, plan, container) == 0
    _status_when(api_client, namespace, "packaged", lambda s: s.get("phase") == "Succeeded", "phase Succeeded")


def test_sigterm_checkpoints_exits_13_and_the_restarted_pod_resumes(
    trainer_image: str, operator_process: Any, api_client: client.ApiClient, namespace: str, runner: Any
) -> None:
    spec = {
        "schedulerName": SCHEDULER,
        "checkpoint": {"size": "1Gi", "mountPath": CHECKPOINT_PATH},
        "runPolicy": {"backoffLimit": 2},
        "trainer": {"config": {**SLOW_DIGITS, "epochs": 5}, "env": ONE_THREAD_ENV},
    }
    create_job(api_client, namespace, "stopped", spec)
    pods: PodRunner = runner("stopped", {DEFAULT_TRAINER_IMAGE: trainer_image})
    pod = pods.pod(0)
    plan = pods.plan(pod, 0)
    container = pods.start(pod, plan)
    _status_when(api_client, namespace, "stopped", lambda s: (s.get("progress") or {}).get("epoch", 0) >= 1, "epoch 1")
    signalled = time.time()
    run("podman", "kill", "--signal", "TERM", container)
    code = pods.finish(pod, plan, container)
    logs = pods.logs(container)
    assert code == ExitCode.TERMINATED, logs[-4000:]
    done = max(_epochs_logged(logs))
    assert 1 <= done < 5, "the signal must land mid-run"
    newest = max(pods.checkpoints.glob("checkpoint-*.pt"), key=lambda path: path.stat().st_mtime)
    assert newest.stat().st_mtime >= signalled, f"no checkpoint written after SIGTERM: {newest.name}"
    message = FinalResult.model_validate_json(plan.termination_log.read_text())
    assert (message.status, message.exit_code) == (FinalStatus.TERMINATED, ExitCode.TERMINATED)

    # The operator restarts the job: a new pod (attempt 1) on the same checkpoint volume.
    restarted = pods.pod(1)
    _status_when(api_client, namespace, "stopped", lambda s: s.get("restarts") == 1, "restarts=1")
    plan = pods.plan(restarted, 1)
    container = pods.start(restarted, plan)
    assert pods.finish(restarted, plan, container) == 0
    logs = pods.logs(container)
    assert f"resumed from {CHECKPOINT_PATH}/{newest.name}" in logs, logs[-4000:]
    resumed = _epochs_logged(logs)
    assert resumed == list(range(done + 1, 6)), resumed
    assert FinalResult.model_validate_json(plan.termination_log.read_text()).epochs_completed == 5
    status = _status_when(api_client, namespace, "stopped", lambda s: s.get("phase") == "Succeeded", "Succeeded")
    assert status["progress"]["epoch"] == 5


def test_python3_only_user_image_gets_metrics_through_the_wrapper(
    user_image: str, operator_process: Any, api_client: client.ApiClient, namespace: str, runner: Any
) -> None:
    spec = {
        "schedulerName": SCHEDULER,
        "trainer": {
            "image": user_image,
            "command": ["python3", "/app/fit_line.py"],
            "args": ["--epochs", "3"],
            "metrics": {"format": "json"},
        },
    }
    create_job(api_client, namespace, "fit-line", spec)
    pods: PodRunner = runner("fit-line", {user_image: user_image})
    pod = pods.pod(0)
    assert pod["spec"]["containers"][0]["command"][:3] == ["python3", CLIENT_ZIPAPP_PATH, "wrap"]
    assert any(v.get("configMap", {}).get("name") == client_configmap_name("fit-line") for v in pod["spec"]["volumes"])
    plan = pods.plan(pod, 0)
    container = pods.start(pod, plan)
    code = int(run("podman", "wait", container, timeout=120).strip())
    logs = pods.logs(container)
    assert code == 0, logs[-4000:]
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert [line["epoch"] for line in lines] == [1, 2, 3]  # the script's output passes through unchanged

    status = _status_when(
        api_client, namespace, "fit-line", lambda s: (s.get("progress") or {}).get("epoch") == 3, "progress 3/3"
    )
    assert status["metrics"]["latest"]["val_loss"] == pytest.approx(lines[-1]["val_loss"])
    message = FinalResult.model_validate_json(plan.termination_log.read_text())
    assert (message.status, message.epochs_completed) == (FinalStatus.SUCCEEDED, 3)
    assert message.metrics["val_loss"] == pytest.approx(lines[-1]["val_loss"])
    assert _written_outside_volumes(container, plan) == []
    assert pods.finish(pod, plan, container) == 0
    _status_when(api_client, namespace, "fit-line", lambda s: s.get("phase") == "Succeeded", "phase Succeeded")


def _read_secret(core: client.CoreV1Api, name: str, namespace: str) -> client.V1Secret | None:
    try:
        return core.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
