"""CEL validation rules for the CRD schemas (`x-kubernetes-validations`), declared on the models they guard.

Why both CEL and pydantic: the pydantic validators run in the admission webhook and in the operator, on
every Kubernetes version, but only where the operator is installed and reachable. A CEL rule in the CRD is
checked by the apiserver itself, so on Kubernetes >= 1.25 an invalid object is refused even when the
webhook is down or was never installed (a GitOps dry-run against a cluster that only has the CRDs).
Servers older than 1.25 drop the unknown `x-kubernetes-validations` keyword when the CRD is stored, so the
rules cost nothing there; the webhook still refuses the same objects.

Each rule sits on the same model as the pydantic validator it mirrors and carries no `fieldPath`, so the
apiserver reports it at the path the webhook uses (`spec.checkpoint: ...`). A rule may be more lenient than
its validator (a Python check CEL cannot express is left to the webhook) but never stricter: nothing the
webhook admits may be refused by the apiserver. Rules use only CEL functions every server since 1.25 has
(no quantity or regex libraries), or the CRD would not install on those servers. `tests/unit/api/test_cel.py`
pins that each rule and its validator agree on the same objects, and the 1.36 compatibility tier checks
them on a real server.
"""

from __future__ import annotations

from typing import Any, Final

VALIDATIONS_KEY: Final = "x-kubernetes-validations"


def rule(expression: str, message: str) -> dict[str, str]:
    """One rule: a CEL expression over `self` (the object it is declared on) that must be true, and the
    message the apiserver returns when it is false (the same words as the pydantic validator's)."""
    return {"rule": expression, "message": message}


def validations(*rules: dict[str, str]) -> dict[str, Any]:
    """The `json_schema_extra` of a model whose objects must satisfy `rules`."""
    return {VALIDATIONS_KEY: list(rules)}
