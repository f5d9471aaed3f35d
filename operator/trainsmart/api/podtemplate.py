"""Pass-through pod pieces of a TrainingJob: extra containers, volumes, mounts, labels and security.

These are Kubernetes objects trainsmart does not interpret, so they stay free-form (the apiserver checks them
when the operator creates the pods); only the names trainsmart itself relies on are typed and checked here,
so a clash with what the operator adds is caught at admission rather than as a failed pod create.
"""

from __future__ import annotations

from typing import Annotated, Final, Self

from pydantic import ConfigDict, Field, model_validator

from trainsmart.api.cel import rule, validations
from trainsmart.api.common import (
    ABSOLUTE_PATH_PATTERN,
    RESERVED_LABEL_PREFIX,
    TRAINER_CONTAINER_NAME,
    ApiModel,
    DnsLabel,
    DnsName,
    FreeFormModel,
    FreeFormObject,
    find_duplicates,
    list_map,
)

# Limits Kubernetes applies when the operator creates the pods; a longer value could only fail there.
MAX_LABEL_VALUE_CHARS: Final = 63
MAX_ANNOTATIONS_BYTES: Final = 256 * 1024
"""The total size of a pod's annotation keys and values."""
MAX_PATH_CHARS: Final = 4096
"""Linux's PATH_MAX: no longer path can be mounted or opened (a character is at least one byte)."""


class NamedObject(FreeFormModel):
    """A Kubernetes object with a name (Volume, Container), passed through as written."""

    name: DnsLabel = Field(description="Name, unique within its list.")


class VolumeMount(FreeFormModel):
    """A Kubernetes VolumeMount for the trainer container."""

    name: DnsLabel = Field(description="Name of a volume in spec.volumes.")
    mount_path: str = Field(
        pattern=ABSOLUTE_PATH_PATTERN,
        max_length=MAX_PATH_CHARS,
        description=f"Absolute path inside the container, at most {MAX_PATH_CHARS} characters (Linux's PATH_MAX).",
    )


class LocalObjectReference(ApiModel):
    """A reference to an object in the job's namespace."""

    name: DnsName = Field(description="Name of the object.")


class PodTemplateOverrides(ApiModel):
    """Additions to every replica pod, for what the rest of the spec does not cover."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            *(
                rule(
                    f"!has(self.{field}) || self.{field}.all(key, !key.startsWith('{RESERVED_LABEL_PREFIX}'))",
                    f"{field} use the reserved prefix {RESERVED_LABEL_PREFIX}; rename them",
                )
                for field in ("labels", "annotations")
            ),
            rule(
                f"(!has(self.initContainers) || self.initContainers.all(c, c.name != '{TRAINER_CONTAINER_NAME}')) && "
                f"(!has(self.extraContainers) || self.extraContainers.all(c, c.name != '{TRAINER_CONTAINER_NAME}'))",
                f"container name {TRAINER_CONTAINER_NAME!r} is the trainer's; pick another",
            ),
        )
    )

    labels: dict[str, Annotated[str, Field(max_length=MAX_LABEL_VALUE_CHARS)]] = Field(
        default_factory=dict,
        description=f"Extra pod labels. Keys under {RESERVED_LABEL_PREFIX} are reserved. Values are at most "
        f"{MAX_LABEL_VALUE_CHARS} characters, as Kubernetes requires of a label value.",
    )
    annotations: dict[str, Annotated[str, Field(max_length=MAX_ANNOTATIONS_BYTES)]] = Field(
        default_factory=dict,
        description=f"Extra pod annotations. Keys under {RESERVED_LABEL_PREFIX} are reserved. Values are at most "
        f"{MAX_ANNOTATIONS_BYTES} characters: Kubernetes refuses a pod whose annotations total more than 256 KiB.",
    )
    service_account_name: DnsName | None = Field(
        default=None, description="Service account of the pods. Unset: the namespace's default."
    )
    image_pull_secrets: list[LocalObjectReference] = Field(
        default_factory=list, max_length=16, description="Secrets for pulling private images."
    )
    security_context: FreeFormObject | None = Field(
        default=None, description="A Kubernetes PodSecurityContext for the pods."
    )
    container_security_context: FreeFormObject | None = Field(
        default=None, description="A Kubernetes SecurityContext for the trainer container."
    )
    init_containers: list[NamedObject] = Field(
        default_factory=list,
        max_length=16,
        description="Kubernetes Containers run to completion before the trainer starts.",
        json_schema_extra=list_map("name"),
    )
    extra_containers: list[NamedObject] = Field(
        default_factory=list,
        max_length=16,
        description="Kubernetes Containers run beside the trainer; they may mount spec.volumes by name.",
        json_schema_extra=list_map("name"),
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        for field, keys in (("labels", self.labels), ("annotations", self.annotations)):
            reserved = sorted(key for key in keys if key.startswith(RESERVED_LABEL_PREFIX))
            if reserved:
                raise ValueError(f"{field} {reserved} use the reserved prefix {RESERVED_LABEL_PREFIX}; rename them")
        names = [container.name for container in (*self.init_containers, *self.extra_containers)]
        if TRAINER_CONTAINER_NAME in names:
            raise ValueError(f"container name {TRAINER_CONTAINER_NAME!r} is the trainer's; pick another")
        duplicates = find_duplicates(names)
        if duplicates:
            raise ValueError(f"container names {duplicates} appear more than once in initContainers/extraContainers")
        return self
