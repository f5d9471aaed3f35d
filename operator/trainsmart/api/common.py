"""Building blocks shared by every trainsmart resource model.

The pydantic models in this package are the single source of truth for the API: the CRD schemas are
generated from them (`crdgen`), the operator parses object bodies with them, and the admission webhook runs
their validators. That is why every field carries a description (it becomes `kubectl explain` text) and why
the few types a plain Python annotation cannot express structurally (int-or-string quantities, free-form
Kubernetes objects, scalars of any JSON type) pin their JSON schema here, in one place.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Final

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema
from pydantic.alias_generators import to_camel

from trainsmart.api.field_hints import unknown_field_reason

GROUP: Final = "trainsmart.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

# Label and annotation keys under this prefix are written by the operator to select and track children;
# users may not set them, or the operator would adopt or orphan the wrong pods.
RESERVED_LABEL_PREFIX: Final = f"{GROUP}/"
# The main container of every replica pod. Builders use this name; extra containers may not take it.
TRAINER_CONTAINER_NAME: Final = "trainer"
# Volumes the operator adds (checkpoints, tokens) are named with this prefix, so user volumes cannot clash.
RESERVED_VOLUME_PREFIX: Final = "trainsmart-"
# The GPU resource name; GPUs are requested with `gpusPerReplica`, never through `resources`.
GPU_RESOURCE: Final = "nvidia.com/gpu"


class ApiModel(BaseModel):
    """Base for every API model: camelCase on the wire, snake_case in Python, unknown fields rejected.

    Unknown fields are an error (not silently dropped) so that a typo such as `replica: 4` fails at
    admission with the field's name instead of quietly running one replica.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
    )

    def to_api(self) -> dict[str, Any]:
        """The camelCase dict an API object carries (unset optional fields left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class FreeFormModel(ApiModel):
    """A Kubernetes object this API passes through untouched (a Volume, a Container, a Toleration).

    Only the keys trainsmart itself relies on are typed; everything else is kept as written and is
    validated by the apiserver when the operator creates the pod.
    """

    model_config = ConfigDict(extra="allow")


# A free-form JSON object (an Affinity, a SecurityContext): the CRD keeps unknown fields under it.
FreeFormObject = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]

Scalar = bool | int | float | str
"""A number, string or boolean."""

ParameterValue = bool | int | float | str | list[Any] | dict[str, Any]
"""A hyperparameter value: a scalar, or a list or object of JSON values (a choice among `[32]` and `[64, 64]`
for a list field such as `model.hiddenSizes`). The one spelling every sweep module uses."""

# A parameter value of any JSON type in the API. Structural schemas cannot say "one of these types", so the
# CRD leaves the node untyped (the apiserver then keeps lists and objects as written) and the model checks
# the type.
ParameterValueField = Annotated[
    ParameterValue,
    WithJsonSchema({"x-kubernetes-preserve-unknown-fields": True}),
]

_QUANTITY_RE = re.compile(r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?$")
_SUFFIX_FACTORS: Final = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}


def parse_quantity(value: int | str) -> Decimal:
    """A Kubernetes resource quantity ("500m", "16Gi", "1e3", 4) as a Decimal in base units.

    Only non-negative quantities are accepted: a negative request or size is always a mistake here.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a quantity; write a number such as 2, '500m' or '16Gi'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} is negative; quantities must be >= 0")
        return Decimal(value)
    match = _QUANTITY_RE.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a quantity; write a number such as 2, '500m' or '16Gi'")
    suffix = match.group(3) or ""
    number = value[: len(value) - len(suffix)]
    try:
        if suffix[:1] in ("e", "E"):
            return Decimal(value)
        return Decimal(number) * _SUFFIX_FACTORS[suffix]
    except (InvalidOperation, KeyError) as exc:  # pragma: no cover - the regex admits only valid forms
        raise ValueError(f"{value!r} is not a quantity") from exc


def _check_quantity(value: Any) -> Any:
    if isinstance(value, int | str):
        parse_quantity(value)
    return value


# A resource quantity as Kubernetes writes it: an integer or a string such as "500m" or "16Gi".
Quantity = Annotated[
    int | str,
    BeforeValidator(_check_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": _QUANTITY_RE.pattern,
            "x-kubernetes-int-or-string": True,
        }
    ),
]

# A DNS-1123 name (pods, PVCs, secrets, priority classes), as the apiserver requires.
DNS_NAME_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DnsName = Annotated[str, Field(pattern=DNS_NAME_PATTERN, min_length=1, max_length=253)]
# A DNS-1123 label (container and volume names).
DNS_LABEL_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DnsLabel = Annotated[str, Field(pattern=DNS_LABEL_PATTERN, min_length=1, max_length=63)]
# An absolute path inside a container (mount paths).
ABSOLUTE_PATH_PATTERN: Final = r"^/.*$"
# A metric name as the trainer reports it (`val_loss`, `val/accuracy`).
METRIC_NAME_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_./-]*$"
MetricName = Annotated[str, Field(pattern=METRIC_NAME_PATTERN, min_length=1, max_length=128)]


def find_duplicates(items: Iterable[str]) -> list[str]:
    """The items that occur more than once, sorted (for messages that list every offender)."""
    seen: set[str] = set()
    repeated: set[str] = set()
    for item in items:
        (repeated if item in seen else seen).add(item)
    return sorted(repeated)


def list_map(*keys: str) -> dict[str, Any]:
    """Schema extras that make a list a map keyed by `keys`: the apiserver rejects duplicate keys and
    server-side apply merges entries by key instead of replacing the whole list."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


def format_error_location(loc: tuple[int | str, ...], prefix: str = "") -> str:
    """`("parameters", 2, "max")` -> `spec.parameters[2].max`: the path as kubectl users read it."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else part
    return path


def format_validation_error(
    error: ValidationError, prefix: str = "spec", model: type[BaseModel] | None = None
) -> list[str]:
    """One line per problem, each starting with the field path, for conditions, Events and the webhook.

    Pydantic locations already use the camelCase aliases; union branches and `[key]` noise are dropped so
    the path is the one a user would type. With the `model` that was validated, a field the API does not
    have is reported as unknown, with the closest known name ("did you mean learningRate?").
    """
    lines: list[str] = []
    for item in error.errors(include_url=False):
        loc = tuple(part for part in item["loc"] if not _is_noise(part))
        message = str(item["msg"]).removeprefix("Value error, ")
        if model is not None and item["type"] == "extra_forbidden":
            message = unknown_field_reason(model, loc)
        path = format_error_location(loc, prefix)
        lines.append(f"{path}: {message}" if path else message)
    return lines


def _is_noise(part: int | str) -> bool:
    # Pydantic inserts the failing validator's name (e.g. "function-before[...]") into union locations.
    return isinstance(part, str) and ("[" in part or part in ("int", "str", "bool", "float"))
