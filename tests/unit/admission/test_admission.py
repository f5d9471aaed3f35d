"""Admission rules and their Kopf glue, without a cluster.

Pins:
- valid TrainingJobs and sweeps pass; model errors come back one per field with the `spec.x.y` path;
- job names must leave room for `<job>-<last replica>` in 63 characters and start with a letter; sweep
  names for `<sweep>-<last trial>-<last replica>`;
- reserved contract variables in `trainer.env` (and a sweep's trialTemplate) are refused, naming the entry;
- immutability: free before the start; frozen while running unless suspended (before or in the update);
  checkpoint frozen once started even when suspended; everything frozen once finished; metadata-only
  updates, deletions and fixes of specs stored under older rules always pass;
- sweeps: search space, objective, algorithm and template frozen once a trial exists; limits editable, and
  parallelTrials a cap (maxTrials may go below it), only below 1 refused;
- every problem is reported at once, path first, by the Kopf handler as a 422 AdmissionError;
- idle GPUs produce a warning, not a refusal;
- the webhook configuration we build matches what we ask of Kopf (CREATE/UPDATE, Fail, sideEffects None);
- certificates are issued for the requested hosts, reused, and reissued when the host moves;
- `configure_admission` wires a TLS server and the managed configuration into Kopf's settings, and the
  Service variant advertises a `service` client config.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any, cast

import kopf
import pytest
from cryptography import x509

from support.manifests import sweep_body, trainingjob_body
from trainsmart.admission.rules import Problem, trainingjob_warnings, validate_sweep, validate_trainingjob
from trainsmart.admission.webhook import (
    MANAGED_CONFIGURATION_NAME,
    ServiceRef,
    ServiceWebhookServer,
    admit_sweep,
    admit_trainingjob,
    build_webhook_configuration,
    configure_admission,
    ensure_webhook_certificates,
)
from trainsmart.main import register_admission
from trainsmart.options import WebhookOptions

RUNNING: dict[str, Any] = {"phase": "Running", "startTime": "2025-01-01T00:00:00Z"}


def job(name: str = "mnist", **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "replicas": 2,
        "gpusPerReplica": 1,
        "checkpoint": {"size": "1Gi"},
        "trainer": {"config": {"model": {"name": "cnn"}, "dataset": {"name": "digits"}, "epochs": 3}},
    }
    return trainingjob_body(name, base | spec)


def sweep(name: str = "search", **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "objective": {"metric": "val_accuracy", "goal": "maximize"},
        "parameters": [
            {"name": "lr", "path": "trainer.config.learningRate", "type": "loguniform", "min": 1e-4, "max": 0.1}
        ],
        "trialTemplate": {"replicas": 1, "trainer": {"config": {"epochs": 2}}},
        "maxTrials": 8,
        "parallelTrials": 2,
    }
    return sweep_body(name, base | spec)


def as_body(obj: dict[str, Any]) -> kopf.Body:
    return kopf.Body(cast("kopf.RawBody", obj))


def paths(problems: list[Problem]) -> list[str]:
    return [problem.path for problem in problems]


# -- TrainingJob: single object ----------------------------------------------------------------------


def test_valid_trainingjob_and_defaults_pass() -> None:
    assert validate_trainingjob(job()) == []
    assert validate_trainingjob({"metadata": {"name": "minimal"}, "spec": {}}) == []


def test_model_errors_carry_field_paths() -> None:
    bad = job(replicas=0, trainer={"config": {"model": {"name": "cnn"}, "dataset": {"name": "synthetic"}}})
    problems = validate_trainingjob(bad)
    assert paths(problems) == ["spec.replicas", "spec.trainer.config"]
    assert "greater than or equal to 1" in problems[0].reason
    assert "model cnn cannot train on dataset synthetic" in problems[1].reason
    assert str(problems[1]).startswith("spec.trainer.config: model cnn")


def test_missing_spec_is_a_problem() -> None:
    assert validate_trainingjob({"metadata": {"name": "x"}}) == [Problem("spec", "is required and must be an object")]


def test_cross_field_rule_in_spec_is_reported() -> None:
    problems = validate_trainingjob(job(gpusPerReplica=2, processesPerReplica=4))
    assert len(problems) == 1 and problems[0].path == "spec"
    assert "processesPerReplica (4) exceeds gpusPerReplica (2)" in problems[0].reason


@pytest.mark.parametrize(
    ("length", "replicas", "ok"),
    [(61, 2, True), (62, 2, False), (60, 10, True), (61, 11, False)],
)
def test_name_must_leave_room_for_replica_index(length: int, replicas: int, ok: bool) -> None:
    problems = validate_trainingjob(job("j" * length, replicas=replicas))
    if ok:
        assert problems == []
    else:
        assert paths(problems) == ["metadata.name"]
        assert "is too long" in problems[0].reason and "limit is 63" in problems[0].reason


def test_name_must_start_with_a_letter() -> None:
    problems = validate_trainingjob(job("1st-run"))
    assert paths(problems) == ["metadata.name"] and "starting with a letter" in problems[0].reason


def test_reserved_env_names_are_refused_by_entry() -> None:
    env = [{"name": "NCCL_DEBUG", "value": "INFO"}, {"name": "WORLD_SIZE", "value": "8"}, {"name": "LOCAL_RANK"}]
    problems = validate_trainingjob(job(trainer={"env": env}))
    assert paths(problems) == ["spec.trainer.env[1].name", "spec.trainer.env[2].name"]
    assert problems[0].reason.startswith("WORLD_SIZE is reserved")


def test_all_problems_are_reported_together() -> None:
    bad = job("n" * 70, replicas=0, trainer={"env": [{"name": "RANK", "value": "0"}]})
    assert paths(validate_trainingjob(bad)) == ["metadata.name", "spec.replicas", "spec.trainer.env[0].name"]


def test_idle_gpus_are_a_warning_not_a_problem() -> None:
    idle = job(gpusPerReplica=4, processesPerReplica=1)
    assert validate_trainingjob(idle) == []
    assert "3 per replica stay idle" in trainingjob_warnings(idle)[0]
    assert trainingjob_warnings(job()) == []


# -- TrainingJob: updates --------------------------------------------------------------------------


def changed(old: dict[str, Any], **spec: Any) -> dict[str, Any]:
    new = copy.deepcopy(old)
    new["spec"].update(spec)
    return new


FROZEN_CHANGES: list[tuple[str, dict[str, Any]]] = [
    ("spec.replicas", {"replicas": 4}),
    ("spec.gpusPerReplica", {"gpusPerReplica": 2}),
    ("spec.processesPerReplica", {"gpusPerReplica": 2, "processesPerReplica": 2}),
    ("spec.trainer.image", {"trainer": {"image": "me/trainer:2", "config": job()["spec"]["trainer"]["config"]}}),
    ("spec.trainer.command", {"trainer": {"command": ["python"], "config": job()["spec"]["trainer"]["config"]}}),
    ("spec.trainer.config", {"trainer": {"config": {"model": {"name": "cnn"}, "epochs": 9}}}),
]


@pytest.mark.parametrize(("path", "change"), FROZEN_CHANGES)
def test_shape_of_a_running_job_is_frozen(path: str, change: dict[str, Any]) -> None:
    old = job()
    problems = validate_trainingjob(changed(old, **change), old, RUNNING)
    assert path in paths(problems)
    problem = next(p for p in problems if p.path == path)
    assert "cannot change after the job has started" in problem.reason and "suspend it first" in problem.reason


def test_message_shows_old_and_new_values() -> None:
    old = job()
    (problem,) = validate_trainingjob(
        changed(old, trainer={"config": {"model": {"name": "cnn"}, "epochs": 9}}), old, RUNNING
    )
    assert "spec.trainer.config.epochs 3 -> 9" in problem.reason


@pytest.mark.parametrize(("path", "change"), FROZEN_CHANGES)
def test_shape_is_free_before_start(path: str, change: dict[str, Any]) -> None:
    old = job()
    for status in (None, {}, {"phase": "Pending"}, {"phase": "Suspended"}):
        assert validate_trainingjob(changed(old, **change), old, status) == [], (path, status)


@pytest.mark.parametrize("suspended_side", ["old", "new"])
def test_shape_may_change_while_suspended(suspended_side: str) -> None:
    old = changed(job(), suspend=suspended_side == "old")
    new = changed(old, replicas=4, gpusPerReplica=2, suspend=True)
    if suspended_side == "old":
        new["spec"]["suspend"] = False  # resuming with the new shape in the same update
    assert validate_trainingjob(new, old, RUNNING | {"phase": "Suspended"}) == []


def test_checkpoint_is_frozen_once_started_even_when_suspended() -> None:
    old = changed(job(), suspend=True)
    problems = validate_trainingjob(changed(old, checkpoint={"claimName": "other"}), old, RUNNING)
    assert paths(problems) == ["spec.checkpoint"]
    assert "even while suspended" in problems[0].reason
    assert 'spec.checkpoint.claimName null -> "other"' in problems[0].reason


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_finished_job_is_frozen_even_when_suspended(phase: str) -> None:
    old = job()
    new = changed(old, replicas=3, suspend=True)
    problems = validate_trainingjob(new, old, {"phase": phase, "startTime": "2025-01-01T00:00:00Z"})
    assert paths(problems) == ["spec.replicas"] and f"has finished ({phase})" in problems[0].reason


def test_other_fields_stay_editable_on_a_running_job() -> None:
    old = job()
    new = changed(old, nodeSelector={"pool": "b"}, runPolicy={"backoffLimit": 9}, suspend=True)
    assert validate_trainingjob(new, old, RUNNING) == []


def test_equivalent_spellings_are_not_changes() -> None:
    old = job(gpusPerReplica=2)
    new = changed(old, processesPerReplica=2)  # unset meant one per GPU already
    assert validate_trainingjob(new, old, RUNNING) == []


def test_metadata_updates_and_deletions_always_pass() -> None:
    old = job("n" * 70, trainer={"env": [{"name": "RANK"}]})  # stored under older rules
    relabelled = copy.deepcopy(old) | {"metadata": {"name": old["metadata"]["name"], "labels": {"a": "b"}}}
    assert validate_trainingjob(relabelled, old, RUNNING) == []
    deleting = changed(old, replicas=9)
    deleting["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    assert validate_trainingjob(deleting, old, RUNNING) == []


def test_a_stored_spec_that_no_longer_parses_can_be_fixed() -> None:
    old = job(replicas=0)
    assert validate_trainingjob(changed(old, replicas=2), old, RUNNING) == []


# -- HyperparamSweep -----------------------------------------------------------------------------------


def test_valid_sweep_passes() -> None:
    assert validate_sweep(sweep()) == []


def test_sweep_model_errors_carry_paths() -> None:
    bad = sweep(parallelTrials=0, objective={"metric": "acc", "goal": "up"})
    assert paths(validate_sweep(bad)) == ["spec.objective.goal", "spec.parallelTrials"]


def test_sweep_name_leaves_room_for_trial_and_replica() -> None:
    # <name>-<trial 0..7>-<replica 0..2>: 4 characters on top of the name
    assert validate_sweep(sweep("s" * 59, trialTemplate={"replicas": 3})) == []
    (problem,) = validate_sweep(sweep("s" * 60, trialTemplate={"replicas": 3}))
    assert problem.path == "metadata.name" and "shorten the name to 59 characters" in problem.reason


def test_sweep_template_env_is_checked() -> None:
    template = {"trainer": {"env": [{"name": "MASTER_ADDR", "value": "x"}]}}
    assert paths(validate_sweep(sweep(trialTemplate=template))) == ["spec.trialTemplate.trainer.env[0].name"]


def test_lowering_max_trials_of_a_running_sweep_below_parallel_trials_passes() -> None:
    old = sweep(maxTrials=8, parallelTrials=4)
    status = {
        "phase": "Running",
        "counts": {"total": 4},
        "trials": [{"name": "search-0", "number": 0, "phase": "Running"}],
    }
    assert validate_sweep(sweep(maxTrials=2, parallelTrials=4), old, status) == []
    assert paths(validate_sweep(sweep(parallelTrials=0), old, status)) == ["spec.parallelTrials"]


def test_sweep_search_is_frozen_once_trials_exist() -> None:
    old = sweep()
    new = copy.deepcopy(old)
    new["spec"]["parameters"][0]["max"] = 0.5
    new["spec"]["trialTemplate"]["trainer"]["config"]["epochs"] = 4
    new["spec"]["maxTrials"] = 20  # limits stay editable
    status = {"counts": {"total": 2}, "trials": [{"name": "search-0", "number": 0, "phase": "Running"}]}
    problems = validate_sweep(new, old, status)
    assert paths(problems) == ["spec.parameters", "spec.trialTemplate"]
    assert "spec.trialTemplate.trainer.config.epochs 2 -> 4" in problems[1].reason
    assert validate_sweep(new, old, {"phase": "Pending"}) == []


# -- Kopf glue -----------------------------------------------------------------------------------------


def test_handler_raises_admission_error_with_every_problem() -> None:
    bad = job("n" * 70, trainer={"env": [{"name": "RANK"}]})
    with pytest.raises(kopf.AdmissionError) as info:
        admit_trainingjob(body=as_body(bad), warnings=[], old=None)
    assert info.value.code == 422
    message = str(info.value)
    assert message.startswith(f"TrainingJob '{'n' * 70}' is invalid (2 problems):")
    assert "\n- metadata.name: is too long" in message and "\n- spec.trainer.env[0].name: RANK is reserved" in message


def test_handler_passes_warnings_and_update_context() -> None:
    warnings: list[str] = []
    old = job(gpusPerReplica=4, processesPerReplica=1) | {"status": {"phase": "Running"}}
    admit_trainingjob(body=as_body(changed(old, suspend=True)), warnings=warnings, old=as_body(old))
    assert len(warnings) == 1
    with pytest.raises(kopf.AdmissionError, match=r"spec.replicas: cannot change"):
        admit_trainingjob(body=as_body(changed(old, replicas=5)), warnings=[], old=as_body(old))
    with pytest.raises(kopf.AdmissionError, match=r"HyperparamSweep 'search' is invalid \(1 problem\)"):
        admit_sweep(body=as_body(sweep(maxTrials=0)), old=None)


def test_register_admission_defines_both_handlers() -> None:
    registry = kopf.OperatorRegistry()
    register_admission(registry, WebhookOptions(port=9443))
    handlers = registry._webhooks.get_all_handlers()
    assert sorted(h.id for h in handlers) == ["validate-sweep", "validate-trainingjob"]
    assert all(list(h.operations or []) == ["CREATE", "UPDATE"] and not h.ignore_failures for h in handlers)


def test_built_configuration_points_each_webhook_at_its_handler() -> None:
    config = build_webhook_configuration(
        "test.trainsmart.dev",
        {"url": "https://127.0.0.1:9443", "caBundle": "Q0E="},
        namespace_selector={"matchLabels": {"team": "a"}},
    )
    first, second = config["webhooks"]
    assert first["clientConfig"] == {"url": "https://127.0.0.1:9443/validate-trainingjob", "caBundle": "Q0E="}
    assert second["rules"][0]["resources"] == ["hyperparamsweeps"]
    assert first["failurePolicy"] == "Fail" and first["sideEffects"] == "None"
    assert first["rules"][0]["operations"] == ["CREATE", "UPDATE"]
    assert first["namespaceSelector"] == {"matchLabels": {"team": "a"}}
    service = build_webhook_configuration("x", {"service": {"namespace": "ops", "name": "trainsmart", "path": "/hook"}})
    assert service["webhooks"][1]["clientConfig"]["service"]["path"] == "/hook/validate-sweep"


def sans(path: Path) -> tuple[set[str], set[str]]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(names.get_values_for_type(x509.DNSName)), {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}


def test_certificates_are_issued_reused_and_reissued(tmp_path: Path) -> None:
    certs = ensure_webhook_certificates(tmp_path, ["127.0.0.1", "trainsmart.ops.svc"])
    assert sans(certs.cert_file) == ({"trainsmart.ops.svc"}, {"127.0.0.1"})
    assert certs.key_file.stat().st_mode & 0o777 == 0o600
    issuer = x509.load_pem_x509_certificate(certs.ca_file.read_bytes()).subject
    assert x509.load_pem_x509_certificate(certs.cert_file.read_bytes()).issuer == issuer
    first = certs.cert_file.read_bytes()
    assert ensure_webhook_certificates(tmp_path, ["127.0.0.1"]).cert_file.read_bytes() == first
    ensure_webhook_certificates(tmp_path, ["10.1.2.3"])
    assert sans(certs.cert_file)[1] == {str(ipaddress.ip_address("10.1.2.3"))}
    assert not (tmp_path / "ca.key").exists()


def test_configure_admission_sets_server_and_managed_name(tmp_path: Path) -> None:
    certs = ensure_webhook_certificates(tmp_path, ["127.0.0.1"])
    settings = kopf.OperatorSettings()
    server = configure_admission(
        settings, host="127.0.0.1", port=9443, certfile=certs.cert_file, pkeyfile=certs.key_file, cafile=certs.ca_file
    )
    assert settings.admission.server is server and settings.admission.managed == MANAGED_CONFIGURATION_NAME
    assert isinstance(server, kopf.WebhookServer) and server.addr == "127.0.0.1" and server.port == 9443
    assert server.cafile == str(certs.ca_file)


def test_register_admission_adds_the_handlers_and_a_startup_step(tmp_path: Path) -> None:
    registry = kopf.OperatorRegistry()
    webhook = WebhookOptions(host="0.0.0.0", port=9443, cert_dir=tmp_path / "certs", managed=None)  # noqa: S104
    register_admission(registry, webhook)
    assert len(registry._webhooks.get_all_handlers()) == 2
    (startup,) = registry._activities.get_all_handlers()
    settings = kopf.OperatorSettings()
    cast("Callable[..., None]", startup.fn)(settings=settings)
    assert sans(tmp_path / "certs" / "tls.crt")[1] == {"127.0.0.1"}  # a wildcard listener is called on loopback
    assert isinstance(settings.admission.server, kopf.WebhookServer) and settings.admission.managed is None


@pytest.mark.asyncio
async def test_service_server_advertises_a_service_reference(tmp_path: Path) -> None:
    certs = ensure_webhook_certificates(tmp_path, ["127.0.0.1"])
    server = ServiceWebhookServer(
        service=ServiceRef("ops", "trainsmart-webhook"),
        addr="127.0.0.1",
        certfile=str(certs.cert_file),
        pkeyfile=str(certs.key_file),
        cafile=str(certs.ca_file),
    )

    async def never_called(*_: Any, **__: Any) -> Any:  # pragma: no cover - no request is sent
        raise AssertionError

    configs = cast("AsyncGenerator[kopf.WebhookClientConfig, None]", server(never_called))
    config = await anext(configs)
    await configs.aclose()
    assert config["service"] == {"namespace": "ops", "name": "trainsmart-webhook", "port": 443}
    assert config["caBundle"] and "url" not in config
