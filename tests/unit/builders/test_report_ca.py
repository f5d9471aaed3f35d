"""The report endpoint's CA in each pod: what an https endpoint needs so the trainer can verify it (issue 13).

Pins:
- with an https report URL and a CA bundle: every pod carries the CA in an annotation, a downwardAPI
  volume projects it to a file, mounted read-only into the trainer, and `TRAINSMART_REPORT_CA_FILE`
  names that file; projected the way the kubelet (the node agent) does it, the file holds the CA, and
  the trainer's own settings parser reads the same path back;
- with a plain http URL, no URL, or no CA bundle (a publicly trusted certificate): no annotation, volume
  or variable at all, so nothing changes for those pods;
- the CA variable is reserved: `spec.trainer.env` cannot point the trainer at another CA.
"""

from __future__ import annotations

import posixpath
from typing import Any

import pytest

from support.models import make_job
from trainsmart.builders import build_worker_pod
from trainsmart.builders.env import REPORT_CA_ANNOTATION, is_reserved_env_name
from trainsmart.devcluster.agent.volumes import project_downward
from trainsmart.settings import OperatorSettings
from trainsmart_trainer import contract
from trainsmart_trainer.config import TrainerConfig
from trainsmart_trainer.settings import runtime_settings

CA = "-----BEGIN CERTIFICATE-----\nMIIB...test...\n-----END CERTIFICATE-----\n"
HTTPS = "https://trainsmart-report.trainsmart.svc:8080/v1/reports"
SPEC = {"replicas": 2, "trainer": {"config": {"dataset": {"name": "digits"}, "model": {"name": "mlp"}}}}


def trainer(pod: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = pod["spec"]["containers"][0]
    return container


def env_of(pod: dict[str, Any]) -> dict[str, Any]:
    return {var["name"]: var.get("value", var.get("valueFrom")) for var in trainer(pod)["env"]}


@pytest.mark.parametrize("index", [0, 1])
def test_an_https_endpoint_gives_every_pod_its_ca_as_a_file(index: int) -> None:
    pod = build_worker_pod(make_job(SPEC), index, 0, OperatorSettings(report_url=HTTPS, report_ca_bundle=CA))
    env = env_of(pod)
    ca_file = env[contract.REPORT_CA_FILE]
    assert pod["metadata"]["annotations"][REPORT_CA_ANNOTATION] == CA

    volumes = [volume for volume in pod["spec"]["volumes"] if "downwardAPI" in volume]
    [volume] = [v for v in volumes if REPORT_CA_ANNOTATION in v["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"]]
    [mount] = [m for m in trainer(pod)["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    [projected] = project_downward(pod, volume["downwardAPI"]["items"], 0o444)
    assert posixpath.join(mount["mountPath"], projected.path) == ca_file
    assert projected.data.decode() == CA

    resolved = {name: value for name, value in env.items() if isinstance(value, str)}
    assert runtime_settings(resolved, config=TrainerConfig()).report_ca_file == ca_file


@pytest.mark.parametrize(
    "settings",
    [
        OperatorSettings(report_url="http://10.0.0.1:8080/v1/reports", report_ca_bundle=CA),
        OperatorSettings(report_url=None, report_ca_bundle=CA),
        OperatorSettings(report_url=HTTPS),
    ],
    ids=["plain http", "no report url", "https without a CA bundle"],
)
def test_no_ca_annotation_volume_or_variable_without_an_https_endpoint_and_a_ca(settings: OperatorSettings) -> None:
    pod = build_worker_pod(make_job(SPEC), 0, 0, settings)
    assert contract.REPORT_CA_FILE not in env_of(pod)
    assert REPORT_CA_ANNOTATION not in pod["metadata"].get("annotations", {})
    assert not any("report-ca" in volume["name"] for volume in pod["spec"]["volumes"])


def test_the_ca_variable_is_reserved() -> None:
    assert is_reserved_env_name(contract.REPORT_CA_FILE)
    spec = {**SPEC, "trainer": {**SPEC["trainer"], "env": [{"name": contract.REPORT_CA_FILE, "value": "/tmp/x"}]}}
    pod = build_worker_pod(make_job(spec), 0, 0, OperatorSettings(report_url=HTTPS, report_ca_bundle=CA))
    assert [var["value"] for var in trainer(pod)["env"] if var["name"] == contract.REPORT_CA_FILE] != ["/tmp/x"]
    assert sum(var["name"] == contract.REPORT_CA_FILE for var in trainer(pod)["env"]) == 1
