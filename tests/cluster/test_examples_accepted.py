"""Every manifest under examples/ is accepted by the real apiserver with the generated CRDs installed.

Pins:
- each document of each example creates cleanly as a server-side dry run (schema, defaults, pruning: a
  field the CRD does not know would be silently dropped, so the stored spec must equal what was sent
  wherever the example sets a value);
- what the apiserver returns (defaults filled in) still parses with the models and passes admission, so
  the operator and the webhook agree with the apiserver about every example.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, utils

from support.paths import REPO
from trainsmart.admission.rules import validate_sweep, validate_trainingjob
from trainsmart.api import GROUP, SWEEP_PLURAL, TRAININGJOB_PLURAL, VERSION, HyperparamSweep, TrainingJob

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("trainsmart_crds")]

EXAMPLES = REPO / "examples"
# examples/argocd/*.yaml are Argo CD Applications, whose CRD this cluster does not have (see
# tests/unit/delivery/test_argocd_examples.py); the folder of jobs one of them syncs is applied like every example.
# examples/custom/: your own code (a script, its TrainingJob and sweep), checked like the rest.
FILES = (
    sorted(EXAMPLES.glob("*.yaml"))
    + sorted(EXAMPLES.glob("argocd/jobs/*.yaml"))
    + sorted(EXAMPLES.glob("custom/*.yaml"))
)
PLURALS = {"TrainingJob": TRAININGJOB_PLURAL, "HyperparamSweep": SWEEP_PLURAL}


def assert_kept(sent: Any, stored: Any, path: str = "") -> None:
    """Every value in `sent` is in `stored` (defaults may add keys; nothing may be pruned or changed)."""
    if isinstance(sent, dict):
        assert isinstance(stored, dict), path
        for key, value in sent.items():
            assert key in stored, f"{path}.{key} was pruned by the apiserver"
            assert_kept(value, stored[key], f"{path}.{key}")
    else:
        assert sent == stored or (isinstance(sent, int | float) and sent == pytest.approx(stored)), path


@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_example_is_accepted(api_client: client.ApiClient, namespace: str, path: Path) -> None:
    objects = client.CustomObjectsApi(api_client)
    for doc in (doc for doc in yaml.safe_load_all(path.read_text()) if doc):
        if doc["kind"] not in PLURALS:
            utils.create_from_dict(api_client, doc, namespace=namespace, dry_run="All")
            continue
        stored = objects.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURALS[doc["kind"]], doc, dry_run="All"
        )
        assert_kept(doc["spec"], stored["spec"], "spec")
        if doc["kind"] == "TrainingJob":
            TrainingJob.model_validate(stored)
            assert validate_trainingjob(stored) == []
        else:
            HyperparamSweep.model_validate(stored)
            assert validate_sweep(stored) == []
