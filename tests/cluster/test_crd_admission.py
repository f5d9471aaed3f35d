"""The generated CRDs on a real kube-apiserver: accepted, Established, and judging objects as documented.

Pins:
- both CRDs install (the apiserver's own structural-schema check passes) and become Established;
- a valid TrainingJob and HyperparamSweep are accepted, come back defaulted, and still parse with the models;
- typical mistakes (a zero replica count, a wrong enum, a wrong type, a bad quantity, a duplicate env name, a
  missing required field) are rejected by the apiserver with the field path in the message;
- empty strings and zero values are ordinary values, not nulls (an env var set to "", an empty arg, 0 GPUs);
- unknown spec fields are stored as written, so the webhook and the operator can refuse them by name (with a
  did-you-mean), while unknown status fields are pruned;
- the CEL rules in the generated CRDs are dropped by 1.20 (no CEL there) without harm;
- the status subresource accepts what the status models serialize, and spec writes cannot touch it;
- descriptions reach the published OpenAPI (what `kubectl explain` reads) and printer columns are served;
- a sweep with list choice values and a path-less parameter used by placeholders is stored as written (the
  lists kept, not pruned), passes the webhook's rules as stored, and a trial table and bestTrial with list
  values round-trip through the status subresource; a placeholder naming no parameter, in a stored sweep,
  is refused by the same rules at its field path.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.request
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from support.admission_cases import SCHEMA, Case, without_indices
from trainsmart.admission.rules import validate_sweep, validate_trainingjob
from trainsmart.api import (
    GROUP,
    SWEEP_PLURAL,
    TRAININGJOB_PLURAL,
    VERSION,
    HyperparamSweep,
    HyperparamSweepStatus,
    TrainingJob,
    TrainingJobStatus,
)

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("trainsmart_crds")]

TRAININGJOB_SPEC: dict[str, Any] = {
    "replicas": 2,
    "gpusPerReplica": 1,
    "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 2, "memory": "2Gi"}},
    "trainer": {
        "env": [{"name": "NCCL_DEBUG", "value": "INFO"}],
        "config": {"epochs": 3, "model": {"name": "mlp", "hiddenSizes": [64]}, "lrSchedule": {"name": "step"}},
    },
    "checkpoint": {"size": "1Gi"},
    "volumes": [{"name": "data", "emptyDir": {}}],
    "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}],
    "tolerations": [{"key": "dedicated", "operator": "Exists"}],
    "runPolicy": {"retryableExitCodes": [137]},
}
SWEEP_SPEC: dict[str, Any] = {
    "objective": {"metric": "val_accuracy", "goal": "maximize"},
    "algorithm": {"name": "tpe", "tpe": {}},
    "parameters": [
        {"name": "lr", "path": "trainer.config.learningRate", "type": "loguniform", "min": 1e-4, "max": 1e-1},
        {"name": "opt", "path": "trainer.config.optimizer.name", "type": "choice", "values": ["adam", "sgd"]},
    ],
    "trialTemplate": {"trainer": {"config": {"epochs": 2}}},
    "maxTrials": 4,
    "parallelTrials": 2,
}


def body(kind: str, name: str, spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}, "spec": spec}


def create(api_client: client.ApiClient, namespace: str, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
    objects = client.CustomObjectsApi(api_client)
    created: dict[str, Any] = objects.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, obj)
    return created


def rejection(api_client: client.ApiClient, namespace: str, plural: str, obj: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as info:
        create(api_client, namespace, plural, obj)
    assert info.value.status == 422, info.value.body
    return str(json.loads(info.value.body)["message"])


def test_a_valid_trainingjob_is_accepted_defaulted_and_parses(api_client: client.ApiClient, namespace: str) -> None:
    stored = create(api_client, namespace, TRAININGJOB_PLURAL, body("TrainingJob", "ok", TRAININGJOB_SPEC))
    spec = stored["spec"]
    assert spec["suspend"] is False  # schema defaults are applied by the apiserver
    assert spec["checkpoint"]["mountPath"] == "/checkpoints"
    assert spec["runPolicy"]["backoffLimit"] == 3
    assert spec["trainer"]["config"]["batchSize"] == 64
    job = TrainingJob.model_validate(stored)
    assert job.spec.world_size == 2
    assert job.spec == TrainingJob.model_validate(body("TrainingJob", "ok", TRAININGJOB_SPEC)).spec


def test_a_valid_sweep_is_accepted_and_parses(api_client: client.ApiClient, namespace: str) -> None:
    stored = create(api_client, namespace, SWEEP_PLURAL, body("HyperparamSweep", "ok", SWEEP_SPEC))
    assert stored["spec"]["algorithm"]["tpe"] == {"startupTrials": 10, "gamma": 0.25, "eiCandidates": 24}
    sweep = HyperparamSweep.model_validate(stored)
    assert sweep.spec.planned_trials() == 4


@pytest.mark.parametrize("case", SCHEMA, ids=lambda case: case.id)
def test_schema_mistakes_are_rejected_with_the_field_path(
    api_client: client.ApiClient, namespace: str, case: Case
) -> None:
    """Typical mistakes (a zero count, a wrong enum or type, a bad quantity, a duplicate env name, a missing
    required field), refused by the apiserver alone; tests/compat checks 1.36 says the same."""
    plural = TRAININGJOB_PLURAL if case.body["kind"] == "TrainingJob" else SWEEP_PLURAL
    message = without_indices(rejection(api_client, namespace, plural, case.body))
    assert case.path in message and case.reason in message, message


def test_empty_strings_and_zeros_are_values_not_nulls(api_client: client.ApiClient, namespace: str) -> None:
    spec = {
        "replicas": 1,
        "gpusPerReplica": 0,
        "trainer": {"args": ["", "--flag"], "env": [{"name": "EMPTY", "value": ""}]},
    }
    created = create(api_client, namespace, TRAININGJOB_PLURAL, body("TrainingJob", "empties", spec))
    assert created["spec"]["trainer"]["env"] == [{"name": "EMPTY", "value": ""}]
    assert created["spec"]["trainer"]["args"] == ["", "--flag"]
    assert created["spec"]["gpusPerReplica"] == 0


def test_unknown_spec_fields_are_kept_for_the_webhook_and_status_ones_pruned(
    api_client: client.ApiClient, namespace: str
) -> None:
    """No webhook watches this namespace: what the apiserver alone does with typos. They are stored as
    written (the webhook, or else the operator, refuses them by name); a typo in status is pruned."""
    spec = {"replica": 4, "trainer": {"config": {"learningrate": 0.1, "earlyStopping": {"patiense": 2}}}}
    stored = create(api_client, namespace, TRAININGJOB_PLURAL, body("TrainingJob", "typo", spec))
    assert stored["spec"]["replica"] == 4
    assert stored["spec"]["trainer"]["config"]["learningrate"] == 0.1
    assert stored["spec"]["trainer"]["config"]["earlyStopping"]["patiense"] == 2
    problems = [str(problem) for problem in validate_trainingjob(stored)]
    assert "spec.replica: unknown field; did you mean replicas?" in problems
    assert "spec.trainer.config.learningrate: unknown field; did you mean learningRate?" in problems
    objects = client.CustomObjectsApi(api_client)
    status = objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, TRAININGJOB_PLURAL, "typo", {"status": {"phase": "Pending", "phaze": "x"}}
    )
    assert status["status"] == {"phase": "Pending"}


def test_cel_rules_are_dropped_harmlessly_by_1_20(api_client: client.ApiClient, namespace: str) -> None:
    """Kubernetes 1.20 has no CEL: the generated CRDs still install (above, for the whole session), the
    stored CRD has no rules left, and an object only a rule would refuse is stored (on this version the
    webhook refuses it; tests/cluster/test_webhook.py)."""
    extensions = client.ApiextensionsV1Api(api_client)
    crd = api_client.sanitize_for_serialization(
        extensions.read_custom_resource_definition(f"{TRAININGJOB_PLURAL}.{GROUP}")
    )
    assert "x-kubernetes-validations" not in json.dumps(crd)
    spec = {"checkpoint": {"claimName": "shared", "size": "1Gi"}}
    stored = create(api_client, namespace, TRAININGJOB_PLURAL, body("TrainingJob", "two-sources", spec))
    assert stored["spec"]["checkpoint"]["claimName"] == "shared"


def test_the_status_subresource_takes_what_the_status_model_writes(
    api_client: client.ApiClient, namespace: str
) -> None:
    objects = client.CustomObjectsApi(api_client)
    create(api_client, namespace, TRAININGJOB_PLURAL, body("TrainingJob", "st", {}))
    now = datetime.now(UTC).replace(microsecond=0)
    status = TrainingJobStatus.model_validate(
        {
            "observedGeneration": 1,
            "phase": "Running",
            "conditions": [
                {"type": "Running", "status": "True", "reason": "AllReplicasRunning", "lastTransitionTime": now}
            ],
            "startTime": now,
            "replicas": {"running": 1},
            "progress": {"epoch": 1, "totalEpochs": 10, "percent": 10.0},
            "metrics": {
                "latest": {"val_loss": 0.5},
                "headline": "val_loss=0.5",
                "history": [{"epoch": 1, "value": 0.5}],
            },
            "diagnostics": [{"type": "SlowDataLoader", "severity": "Info", "message": "GPU idle 40%"}],
        }
    )
    # A status written through the main resource is ignored: only the status subresource changes it.
    objects.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, TRAININGJOB_PLURAL, "st", {"status": {"phase": "Failed"}}
    )
    assert "status" not in objects.get_namespaced_custom_object(GROUP, VERSION, namespace, TRAININGJOB_PLURAL, "st")
    stored = objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, TRAININGJOB_PLURAL, "st", {"status": status.to_api()}
    )
    assert TrainingJobStatus.model_validate(stored["status"]) == status


def test_the_sweep_status_subresource_takes_a_trial_table(api_client: client.ApiClient, namespace: str) -> None:
    objects = client.CustomObjectsApi(api_client)
    create(api_client, namespace, SWEEP_PLURAL, body("HyperparamSweep", "st", SWEEP_SPEC))
    status = HyperparamSweepStatus.model_validate(
        {
            "phase": "Running",
            "counts": {"total": 2, "running": 1, "succeeded": 1, "finished": 1, "planned": 4},
            "bestTrial": {"name": "st-0", "parameters": {"lr": 0.01, "opt": "adam"}, "metricValue": 0.9},
            "trials": [
                {"name": "st-0", "number": 0, "phase": "Succeeded", "parameters": {"lr": 0.01, "opt": "adam"}},
                {"name": "st-1", "number": 1, "phase": "Running", "parameters": {"lr": 0.001, "opt": "sgd"}},
            ],
        }
    )
    stored = objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, SWEEP_PLURAL, "st", {"status": status.to_api()}
    )
    assert HyperparamSweepStatus.model_validate(stored["status"]) == status


def get_json(api_client: client.ApiClient, path: str, accept: str = "application/json") -> Any:
    """A raw GET with the session's credentials (the generated client has no call for these endpoints)."""
    configuration = api_client.configuration
    token = configuration.auth_settings()["BearerToken"]["value"]
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    url = configuration.host + path
    assert url.startswith("https://")
    request = urllib.request.Request(url, headers={"Authorization": token, "Accept": accept})  # noqa: S310
    with urllib.request.urlopen(request, context=context, timeout=30) as response:  # noqa: S310
        return json.loads(response.read())


def test_descriptions_reach_the_published_openapi(api_client: client.ApiClient) -> None:
    """What `kubectl explain` can read on 1.20: /openapi/v2, republished shortly after a CRD changes.

    The apiserver publishes an object that keeps unknown fields without its properties in v2 (so that
    kubectl's client-side validation, which reads v2, does not refuse what the schema keeps), so on 1.20
    the spec's own description is there but its fields are not: the price of refusing typos by name on a
    server without strict field validation (docs/validation.md). Their descriptions stay in the CRD, and
    servers from 1.27 serve them in /openapi/v3, which `kubectl explain` reads there (the 1.36 tier)."""
    deadline = time.monotonic() + 30
    while True:
        definitions = get_json(api_client, "/openapi/v2")["definitions"]
        job = definitions.get(f"dev.trainsmart.{VERSION}.TrainingJob")
        if job is not None or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert job is not None, "TrainingJob never appeared in /openapi/v2"
    assert job["properties"]["spec"]["description"] == "Desired state of the TrainingJob."
    assert job["properties"]["status"]["properties"]["phase"]["description"]
    sweep = definitions[f"dev.trainsmart.{VERSION}.HyperparamSweep"]
    assert sweep["properties"]["spec"]["description"] == "Desired state of the HyperparamSweep."
    extensions = client.ApiextensionsV1Api(api_client)
    stored = extensions.read_custom_resource_definition(f"{TRAININGJOB_PLURAL}.{GROUP}")
    spec = stored.spec.versions[0].schema.open_apiv3_schema.properties["spec"]
    assert spec.properties["replicas"].description.startswith("Pods (nodes)")


def test_printer_columns_are_served(api_client: client.ApiClient, namespace: str) -> None:
    create(api_client, namespace, TRAININGJOB_PLURAL, body("TrainingJob", "cols", {"replicas": 3}))
    table = get_json(
        api_client,
        f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{TRAININGJOB_PLURAL}",
        accept="application/json;as=Table;v=v1;g=meta.k8s.io",
    )
    names = [column["name"] for column in table["columnDefinitions"]]
    assert names[:8] == ["Name", "Phase", "Replicas", "GPUs", "Progress", "Metric", "Restarts", "Age"]
    (row,) = table["rows"]
    assert row["cells"][:4] == ["cols", None, 3, 0]


LIST_SWEEP_SPEC: dict[str, Any] = {
    "objective": {"metric": "val_accuracy", "goal": "maximize"},
    "algorithm": {"name": "grid"},
    "parameters": [
        {
            "name": "sizes",
            "path": "trainer.config.model.hiddenSizes",
            "type": "choice",
            "values": [[32], [64, 64], [128, 64, 32]],
        },
        {"name": "opt", "type": "choice", "values": [{"name": "sgd", "momentum": 0.9}, {"name": "adam"}]},
    ],
    "trialTemplate": {
        "trainer": {"args": ["--optimizer=${params.opt}"], "config": {"model": {"name": "mlp"}, "epochs": 2}}
    },
}


def test_list_choices_are_stored_as_written_and_pass_the_rules(api_client: client.ApiClient, namespace: str) -> None:
    stored = create(api_client, namespace, SWEEP_PLURAL, body("HyperparamSweep", "lists", LIST_SWEEP_SPEC))
    assert stored["spec"]["parameters"][0]["values"] == [[32], [64, 64], [128, 64, 32]]
    assert stored["spec"]["parameters"][1]["values"] == [{"name": "sgd", "momentum": 0.9}, {"name": "adam"}]
    assert "path" not in stored["spec"]["parameters"][1]
    assert validate_sweep(stored) == []
    assert HyperparamSweep.model_validate(stored).spec.grid_size() == 6
    objects = client.CustomObjectsApi(api_client)
    parameters = {"sizes": [128, 64, 32], "opt": {"name": "adam"}}
    status = HyperparamSweepStatus.model_validate(
        {
            "phase": "Running",
            "bestTrial": {"name": "lists-0", "parameters": parameters, "metricValue": 0.9},
            "trials": [{"name": "lists-0", "number": 0, "phase": "Succeeded", "parameters": parameters}],
        }
    )
    written = objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, SWEEP_PLURAL, "lists", {"status": status.to_api()}
    )
    assert written["status"]["bestTrial"]["parameters"] == parameters
    assert HyperparamSweepStatus.model_validate(written["status"]) == status


def test_a_placeholder_naming_no_parameter_is_refused_at_its_field(
    api_client: client.ApiClient, namespace: str
) -> None:
    spec = json.loads(json.dumps(LIST_SWEEP_SPEC))
    spec["trialTemplate"]["trainer"]["args"] = ["--optimizer=${params.opt}", "--sizes", "${params.size}"]
    stored = create(api_client, namespace, SWEEP_PLURAL, body("HyperparamSweep", "typo", spec))
    assert [str(problem) for problem in validate_sweep(stored)] == [
        "spec.trialTemplate.trainer.args[2]: ${params.size} names no parameter; parameters are sizes, opt"
    ]
