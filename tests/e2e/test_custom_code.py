"""Your own, unmodified training script end to end: metrics from its output, with no code change.

The script is examples/custom/train_digits.py (plain PyTorch, prints one JSON line per epoch), applied
through the examples that show it (examples/custom/*.yaml) as a user would: its ConfigMap from the file
(`kubectl create configmap --from-file`), then the manifest, with only the simulated GPU nodes' taint
tolerated and fewer epochs. The operator wraps the command in its metrics wrapper, which it mounts from a
per-job ConfigMap.

Pins:
- a TrainingJob of the script shows live progress (an intermediate epoch of the total the lines name,
  while Running), ends Succeeded with the last epoch's metrics in status, and runs under the wrapper
  mounted from its immutable `<job>-trainsmart-client` ConfigMap, owned by the job;
- a TPE sweep over it, the learning rate reaching the command line by `${params.lr}`, ends Succeeded with
  bestTrial filled, every trial succeeded with the objective parsed from stdout (no NoMetric), and each
  trial's command line carries its own parameter value;
- a trial's parameters reach the running process by all three routes (the `${params.NAME}` placeholder,
  `TRAINSMART_PARAM_<NAME>`, the `TRAINSMART_PARAMS_FILE` file), a list-valued one as compact JSON.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from support.custom_code import EXAMPLES, create_script_configmap, example_spec, set_args
from support.kubeapi import condition, create_job, create_sweep, get_job, get_sweep, job_pods, status_of, trials
from support.manifests import GPU_TOLERATIONS
from support.waiting import wait_for
from trainsmart.names import client_configmap_name

pytestmark = pytest.mark.e2e

SCRIPT = EXAMPLES / "train_digits.py"
WRAP = ["python3", "/opt/trainsmart/client/trainsmart-client.pyz", "wrap"]


def finished(status: dict[str, Any]) -> dict[str, Any] | None:
    return status if status.get("phase") in ("Succeeded", "Failed") else None


def test_the_unmodified_script_shows_live_progress_and_final_metrics(
    operator_process: Any, api_client: client.ApiClient, namespace: str
) -> None:
    spec = example_spec("trainingjob-digits-script.yaml")
    spec["tolerations"] = GPU_TOLERATIONS
    set_args(spec["trainer"], epochs="3", batch_size="1")  # about a second an epoch: progress shows, under load too
    create_script_configmap(api_client, namespace, spec, SCRIPT.name)
    job = create_job(api_client, namespace, "script", spec)

    def job_status() -> dict[str, Any]:
        return status_of(get_job(api_client, namespace, "script"))

    seen = wait_for(
        lambda: (
            (s := job_status()).get("phase") == "Running" and 0 < (s.get("progress") or {}).get("epoch", 0) < 3 and s
        ),
        45,
        "an intermediate epoch of the script in status",
        lambda: str(job_status()),
    )
    assert seen["progress"]["totalEpochs"] == 3
    status = wait_for(lambda: finished(job_status()), 45, "the script's job to finish", lambda: str(job_status()))
    assert status["phase"] == "Succeeded", condition(status, "Failed").get("message")
    assert status["progress"]["epoch"] == 3 and status["progress"]["percent"] == 100
    latest = status["metrics"]["latest"]
    assert {"train_loss", "val_loss", "val_accuracy"} <= set(latest), latest
    assert 0 < latest["val_accuracy"] <= 1

    (pod,) = job_pods(api_client, namespace, "script")
    trainer = next(c for c in pod.spec.containers if c.name == "trainer")
    assert trainer.command == [*WRAP, "--format", "json", "--", *spec["trainer"]["command"]]
    configmap = client.CoreV1Api(api_client).read_namespaced_config_map(client_configmap_name("script"), namespace)
    assert configmap.immutable is True and configmap.binary_data
    assert [ref.uid for ref in configmap.metadata.owner_references] == [job["metadata"]["uid"]]


def test_a_tpe_sweep_over_the_script_gets_its_objective_from_stdout(
    operator_process: Any, api_client: client.ApiClient, namespace: str
) -> None:
    spec = example_spec("sweep-digits-script.yaml")
    spec.update(maxTrials=3, parallelTrials=2)
    spec["algorithm"]["tpe"] = {"startupTrials": 2}
    template = spec["trialTemplate"]
    template["tolerations"] = GPU_TOLERATIONS
    set_args(template["trainer"], epochs="2")
    create_script_configmap(api_client, namespace, template, SCRIPT.name)
    create_sweep(api_client, namespace, "tune", spec)

    def sweep_status() -> dict[str, Any]:
        return status_of(get_sweep(api_client, namespace, "tune"))

    def describe() -> str:
        status = sweep_status()
        rows = [f"{r['name']} {r['phase']} {r.get('reason')}: {r.get('message')}" for r in status.get("trials", [])]
        return "\n".join([f"sweep {status.get('phase')} {status.get('conditions')}", *rows])

    status = wait_for(lambda: finished(sweep_status()), 60, "the sweep over the script to finish", describe)
    assert status["phase"] == "Succeeded", describe()
    table = status["trials"]
    assert len(table) == 3 and all(row["phase"] == "Succeeded" for row in table), describe()
    assert not [row for row in table if row.get("reason") == "NoMetric"]
    best = status["bestTrial"]
    assert best["name"] in {row["name"] for row in table} and 0 < best["metricValue"] <= 1
    assert best["metricValue"] == max(row["metricValue"] for row in table)
    for job in trials(api_client, namespace, "tune"):
        row = next(row for row in table if row["name"] == job["metadata"]["name"])
        args = job["spec"]["trainer"]["args"]
        assert float(args[args.index("--lr") + 1]) == pytest.approx(row["parameters"]["lr"])


# Prints what the process received by each route as one metric line: the placeholder in its args, the
# TRAINSMART_PARAM_* variable and the TRAINSMART_PARAMS_FILE file (a list-valued parameter as its width).
PARAMETER_PROBE = """
import json, os, sys
from_file = json.load(open(os.environ["TRAINSMART_PARAMS_FILE"]))
line = {
    "epoch": 1,
    "epochs": 1,
    "arg_lr": float(sys.argv[1]),
    "env_lr": float(os.environ["TRAINSMART_PARAM_LR"]),
    "file_lr": float(from_file["lr"]),
    "arg_width": float(json.loads(sys.argv[2])[0]),
    "env_width": float(json.loads(os.environ["TRAINSMART_PARAM_SIZES"])[0]),
    "file_width": float(from_file["sizes"][0]),
    "val_loss": 0.5,
}
print(json.dumps(line), flush=True)
"""


def test_a_trials_parameters_reach_the_process_by_placeholder_environment_and_file(
    operator_process: Any, api_client: client.ApiClient, namespace: str
) -> None:
    spec = {
        "objective": {"metric": "val_loss", "goal": "minimize"},
        "algorithm": {"name": "grid"},
        "parameters": [
            {"name": "lr", "type": "choice", "values": [0.25]},
            {"name": "sizes", "type": "choice", "values": [[48, 16]]},
        ],
        "trialTemplate": {
            "tolerations": GPU_TOLERATIONS,
            "trainer": {
                "command": ["python3", "-c", PARAMETER_PROBE],
                "args": ["${params.lr}", "${params.sizes}"],
                "metrics": {"format": "json"},
            },
        },
    }
    create_sweep(api_client, namespace, "probe", spec)

    def sweep_status() -> dict[str, Any]:
        return status_of(get_sweep(api_client, namespace, "probe"))

    status = wait_for(lambda: finished(sweep_status()), 60, "the probe sweep to finish", lambda: str(sweep_status()))
    assert status["phase"] == "Succeeded", status
    (trial,) = trials(api_client, namespace, "probe")
    assert trial["spec"]["trainer"]["args"] == ["0.25", "[48,16]"]
    latest = trial["status"]["metrics"]["latest"]
    assert {key: latest[key] for key in ("arg_lr", "env_lr", "file_lr")} == dict.fromkeys(
        ("arg_lr", "env_lr", "file_lr"), 0.25
    )
    assert {key: latest[key] for key in ("arg_width", "env_width", "file_width")} == dict.fromkeys(
        ("arg_width", "env_width", "file_width"), 48.0
    )
