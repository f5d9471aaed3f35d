"""Your own code in sweeps and DDP end to end: graceful early stopping, resuming, and rank 0's metrics only.

The scripts and manifests are the examples that show them (examples/custom/), applied as a user would (the
script's ConfigMap from the file, then the manifest) with only the GPU nodes' taint tolerated. Logs are the
node agent's per-pod files, which outlive the pods, so a stopped run's output can still be read.

Pins:
- ASHA over a script that uses the client library (train_with_client.py) pauses the worse trial at its first
  rung and promotes the better one; both stops are graceful (SIGTERM sets `stop_requested()`, the script
  saves its epoch through `checkpoint_dir()` and exits 13), and the promoted trial resumes from
  `latest_checkpoint()` at the epoch it saved: its history has every epoch once, no restart is counted;
- the same over a plain script run by the metrics wrapper (train_digits_resumable.py, metrics from
  stdout), which saves on SIGTERM itself: the signal reaches it only through the wrapper, because the
  script runs in its own session (as in a real pod, where only the container's main process is signalled;
  the local node agent signals the whole process group);
- a 2-replica DDP job of that plain script (one process per pod, env://, gloo) reports rank 0's lines only:
  every rank prints its own validation slice's values, and status (history, best, latest, progress) holds
  rank 0's, with progress never going back.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from kubernetes import client

from support.custom_code import create_script_configmap, example_spec
from support.kubeapi import condition, create_job, create_sweep, get_job, get_sweep, job_pods, status_of, trials
from support.manifests import GPU_TOLERATIONS
from support.node_agent import RunningAgent
from support.waiting import wait_for
from trainsmart.names import pod_name

pytestmark = pytest.mark.e2e

EPOCHS = 20  # as in the manifests: a stop lands seconds after the first rung, long before the last epoch
RESUMED = re.compile(r"resumed from epoch-(\d+)\.pt after epoch (\d+)")


def trainer_logs(agent: RunningAgent, namespace: str, pod: str) -> list[str]:
    """The trainer's output of every pod that had this name, oldest first (each run is a new pod UID)."""
    runs = [d for d in (agent.state_dir / "logs").glob(f"{namespace}_{pod}_*") if d.name.count("_") == 2]
    logs = [run / "trainer.log" for run in sorted(runs, key=lambda d: d.stat().st_mtime)]
    return [log.read_text(errors="replace") for log in logs if log.exists()]


def describe_sweep(api: client.ApiClient, namespace: str, sweep: str) -> str:
    status = status_of(get_sweep(api, namespace, sweep))
    lines = [f"sweep {status.get('phase')} {status.get('conditions')}"]
    for job in trials(api, namespace, sweep):
        s = job.get("status") or {}
        epochs = [p["epoch"] for p in (s.get("metrics") or {}).get("history", [])]
        lines.append(f"{job['metadata']['name']} suspend={job['spec'].get('suspend')} {s.get('phase')} {epochs}")
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("manifest", "script", "stop_line"),
    [
        ("sweep-asha-client.yaml", "train_with_client.py", r"stop requested after epoch (\d+): saved \S+epoch-\1\.pt"),
        ("sweep-asha-wrapper.yaml", "train_digits_resumable.py", r"SIGTERM: saved \S+epoch-(\d+)\.pt after epoch \1"),
    ],
    ids=["client", "wrapper"],
)
def test_asha_stops_a_custom_script_gracefully_and_the_promoted_trial_resumes_from_its_checkpoint(
    operator_process: Any,
    node_agent: RunningAgent,
    api_client: client.ApiClient,
    namespace: str,
    manifest: str,
    script: str,
    stop_line: str,
) -> None:
    # Grid order: trial 0 gets the learning rate that learns, trial 1 one too small to. One trial at a
    # time with reduction factor 2: trial 0 pauses at the 1-epoch rung, trial 1 reaches it worse and is
    # paused, and trial 0 is promoted.
    spec = example_spec(manifest)
    template = spec["trialTemplate"]
    template["tolerations"] = GPU_TOLERATIONS
    if manifest == "sweep-asha-wrapper.yaml":
        template["trainer"]["command"] = ["setsid", *template["trainer"]["command"]]
    create_script_configmap(api_client, namespace, template, script)
    create_sweep(api_client, namespace, "asha", spec)

    status = wait_for(
        lambda: (
            (s := status_of(get_sweep(api_client, namespace, "asha"))).get("phase") in ("Succeeded", "Failed") and s
        ),
        85,
        "the ASHA sweep to finish",
        lambda: describe_sweep(api_client, namespace, "asha"),
    )
    assert status["phase"] == "Succeeded", describe_sweep(api_client, namespace, "asha")
    rows = {row["name"]: row for row in status["trials"]}
    assert (rows["asha-1"]["phase"], rows["asha-1"]["reason"]) == ("EarlyStopped", "EarlyStopped")
    assert rows["asha-0"]["phase"] == "Succeeded" and status["bestTrial"]["name"] == "asha-0"

    promoted = get_job(api_client, namespace, "asha-0")["status"]
    assert promoted["progress"]["epoch"] == EPOCHS and promoted["restarts"] == 0
    assert [point["epoch"] for point in promoted["metrics"]["history"]] == list(range(1, EPOCHS + 1))

    *stopped_runs, resumed_run = trainer_logs(node_agent, namespace, pod_name("asha-0", 0))
    stops = [match for log in stopped_runs if (match := re.search(stop_line, log))]
    assert stops, "\n---\n".join(stopped_runs)[-3000:]
    saved = int(stops[-1].group(1))
    assert saved < EPOCHS
    resumed = RESUMED.search(resumed_run)
    assert resumed is not None and resumed.groups() == (str(saved), str(saved)), resumed_run[-2000:]
    assert f'"epoch": {saved + 1},' in resumed_run or f"epoch {saved + 1}/{EPOCHS}" in resumed_run
    assert f'"epoch": {saved},' not in resumed_run and f"epoch {saved}/{EPOCHS}" not in resumed_run

    early_stopped = trainer_logs(node_agent, namespace, pod_name("asha-1", 0))
    assert any(re.search(stop_line, log) for log in early_stopped), "\n---\n".join(early_stopped)[-3000:]
    events = client.CoreV1Api(api_client).list_namespaced_event(namespace).items
    assert any(e.reason == "TrialPromoted" and "asha-0" in e.message for e in events)


def printed_epochs(log: str) -> list[dict[str, float]]:
    return [json.loads(line) for line in log.splitlines() if line.startswith('{"epoch"')]


def test_a_ddp_job_of_a_plain_script_reports_rank_0_only(
    operator_process: Any, node_agent: RunningAgent, api_client: client.ApiClient, namespace: str
) -> None:
    spec = example_spec("trainingjob-ddp-script.yaml")
    spec["tolerations"] = GPU_TOLERATIONS
    args = spec["trainer"]["args"]
    args[args.index("--epochs") + 1] = "3"
    create_script_configmap(api_client, namespace, spec, "train_digits_resumable.py")
    create_job(api_client, namespace, "ddp", spec)

    seen: list[tuple[int, int]] = []
    # (epoch, restarts, attempt, phase) per poll. On a loaded machine a rank of this gloo job can fail (and
    # the job restart from epoch 0: it has no checkpoint), seen twice in full runs as progress 3 -> 1 -> 3;
    # what this test pins is that one rank's curve is reported, so epochs must only grow within an attempt.
    polled: list[tuple[int, int, Any, str | None]] = []

    def finished() -> dict[str, Any] | None:
        status = status_of(get_job(api_client, namespace, "ddp"))
        progress = status.get("progress") or {}
        if progress.get("epoch"):
            seen.append((progress["epoch"], progress["totalEpochs"]))
            polled.append((progress["epoch"], status.get("restarts", 0), progress.get("attempt"), status.get("phase")))
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    status = wait_for(
        finished, 80, "the DDP job to finish", lambda: str(status_of(get_job(api_client, namespace, "ddp")))
    )
    assert status["phase"] == "Succeeded", condition(status, "Failed").get("message")
    assert status["replicas"]["succeeded"] == 2
    assert seen and all(total == 3 for _, total in seen), seen
    for attempt in {entry[2] for entry in polled}:
        epochs = [entry[0] for entry in polled if entry[2] == attempt]
        assert epochs == sorted(epochs), (polled, status)
    if status.get("restarts"):
        print(f"the DDP job restarted {status['restarts']} time(s): {condition(status, 'Restarting')}")
    assert status["progress"]["epoch"] == 3 and status["progress"]["percent"] == 100

    pods = {pod.metadata.name: pod for pod in job_pods(api_client, namespace, "ddp")}
    rank0, rank1 = (printed_epochs(node_agent.container_log(pods[pod_name("ddp", r)], "trainer")) for r in (0, 1))
    assert [line["epoch"] for line in rank0] == [line["epoch"] for line in rank1] == [1, 2, 3], (rank0, rank1)
    # Each rank scores its own slice of the validation data: their values tell whose line was reported.
    assert all(mine["val_loss"] != theirs["val_loss"] for mine, theirs in zip(rank0, rank1, strict=True))
    metrics = status["metrics"]
    assert metrics["objective"] == "val_loss"
    assert [(p["epoch"], p["value"]) for p in metrics["history"]] == [(r["epoch"], r["val_loss"]) for r in rank0]
    assert metrics["best"]["val_loss"] == min(line["val_loss"] for line in rank0)
    assert metrics["best"]["val_accuracy"] == max(line["val_accuracy"] for line in rank0)
    last = rank0[-1]
    assert {name: metrics["latest"][name] for name in ("train_loss", "val_loss", "val_accuracy")} == {
        name: last[name] for name in ("train_loss", "val_loss", "val_accuracy")
    }
