"""What `get`, `describe` and `watch` print, from recorded objects; the CLI's parsing and its errors.

Pins:
- durations read as kubectl's ages (45s, 1m12s, 2h03m, 3d4h);
- a job row shows phase, epochs and percent, the objective's latest value, restarts; cost when the
  status has one (a number or an amount with a currency), "-" when not;
- why a job waits: suspended (with the command that resumes it), a Kueue queue, an unschedulable pod
  with the scheduler's message;
- describe lists a sweep's trials with their parameters and EarlyStopped reasons, and the Events;
- the final line of watch: `job X Succeeded in 42s: val_accuracy=...`; a failed one names its reason;
- the CLI parses kubectl-like flags; with no reachable cluster it exits 3 and says to check KUBECONFIG;
  a 403 from the API tells the user which permission to ask for (exit 4).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from trainsmart.cli import build_parser
from trainsmart.console.access import Cluster
from trainsmart.console.views import (
    describe_sweep,
    final_line,
    format_duration,
    job_row,
    waiting_reasons,
)

NOW = datetime(2026, 12, 7, 18, 40, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "text"), [(45, "45s"), (72, "1m12s"), (120, "2m"), (7380, "2h03m"), (273600, "3d4h"), (None, "-")]
)
def test_durations_read_as_ages(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_a_job_row_shows_progress_metric_restarts_and_cost(recorded: dict[str, Any]) -> None:
    job = recorded["trials"][0]
    row = job_row(job, NOW)
    assert (row["NAME"], row["PHASE"], row["PROGRESS"], row["RESTARTS"]) == (
        "digits-lr-0",
        "Succeeded",
        "6/6 (100%)",
        "0",
    )
    assert row["METRIC"].startswith("val_accuracy=0.94") and row["SWEEP"] == "digits-lr"
    assert row["COST"] == "-"
    job["status"]["estimatedCost"] = 1.5
    assert job_row(job, NOW)["COST"] == "1.50"
    job["status"]["estimatedCost"] = {"amount": 2.25, "currency": "USD"}
    assert job_row(job, NOW)["COST"] == "2.25 USD"


def test_why_a_job_waits(recorded: dict[str, Any]) -> None:
    job = recorded["trials"][0]
    job["status"] = {"phase": "Suspended"}
    job["spec"]["suspend"] = True
    assert "kubectl patch tj digits-lr-0" in waiting_reasons(job, [], [])[0]
    job["spec"]["queueName"] = "team-a"
    assert waiting_reasons(job, [], []) == ["suspended: waiting for Kueue to admit it through LocalQueue team-a"]
    job["spec"]["suspend"] = False
    job["status"] = {"phase": "Pending"}
    unschedulable = {
        "metadata": {"name": "digits-lr-0-0"},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                }
            ],
        },
    }
    assert waiting_reasons(job, [unschedulable], []) == [
        "queued in Kueue LocalQueue team-a",
        "pod digits-lr-0-0 cannot be scheduled: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
    ]


def test_describe_lists_trials_with_parameters_and_events(recorded: dict[str, Any]) -> None:
    text = "\n".join(describe_sweep(recorded["sweep"], recorded["trials"], recorded["events"], NOW))
    assert "Best:          val_accuracy=0.9479 (digits-lr-0)" in text
    assert "4 succeeded, 2 early-stopped, 0 failed" in text
    (row,) = [line for line in text.splitlines() if "digits-lr-5 " in line and "EarlyStopped" in line]
    assert "1.02e-05" in row and row.rstrip().endswith("EarlyStopped")
    events = text.split("Events:", 1)[1].splitlines()
    assert "MaxTrialsReached" in events[-1] and "all 6 trials (maxTrials) have finished" in events[-1]


def test_the_final_line_of_watch(recorded: dict[str, Any]) -> None:
    job = recorded["trials"][0]
    assert final_line("TrainingJob", job, NOW).startswith("job digits-lr-0 Succeeded in ")
    assert ": val_accuracy=0.94" in final_line("TrainingJob", job, NOW)
    job["status"]["phase"] = "Failed"
    job["status"]["conditions"] = [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "4 attempts failed"}
    ]
    assert "(BackoffLimitExceeded: 4 attempts failed)" in final_line("TrainingJob", job, NOW)
    sweep_line = final_line("HyperparamSweep", recorded["sweep"], NOW)
    assert sweep_line.startswith("sweep digits-lr Succeeded in 42s: best val_accuracy=0.9479 (digits-lr-0)")


def test_the_cli_parses_kubectl_like_flags() -> None:
    args = build_parser().parse_args(
        ["get", "tj", "x", "-n", "ml", "-o", "wide", "--context", "c", "--kubeconfig", "k"]
    )
    assert (args.kind, args.name, args.namespace, args.output, args.context, args.kubeconfig) == (
        "tj",
        "x",
        "ml",
        "wide",
        "c",
        "k",
    )
    args = build_parser().parse_args(["logs", "job", "--rank", "1", "-f"])
    assert (args.name, args.rank, args.follow, args.container) == ("job", 1, True, "trainer")
    args = build_parser().parse_args(["report", "s", "-o", "a.html", "-o", "a.png"])
    assert args.output == ["a.html", "a.png"]


def test_no_reachable_cluster_exits_3_and_says_what_to_check(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "http://127.0.0.1:{port}"}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: c, context: {{cluster: c, user: u}}}}]
current-context: c
"""
    )
    done = subprocess.run(
        [sys.executable, "-m", "trainsmart.cli", "get", "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert f"cannot reach the cluster at http://127.0.0.1:{port}" in done.stderr
    assert "check KUBECONFIG" in done.stderr


def test_a_forbidden_read_says_which_permission_to_ask_for() -> None:
    cluster = Cluster(client.ApiClient(client.Configuration()), "ml")
    error = ApiException(status=403, reason="Forbidden")
    error.body = '{"message": "trainingjobs.trainsmart.dev is forbidden: User \\"bob\\" cannot list"}'
    translated = cluster.translate("list trainingjobs.trainsmart.dev in namespace ml", error)
    assert translated.exit_code == 4
    assert str(translated).startswith("forbidden: cannot list trainingjobs.trainsmart.dev in namespace ml")
    assert "ask your cluster admin for get, list and watch on trainingjobs.trainsmart.dev" in str(translated)
