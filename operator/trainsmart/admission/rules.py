"""What the validating webhook refuses, as pure functions of the objects in an AdmissionReview.

The pydantic models already judge a spec taken alone, and their errors are reported here with the field
path a user would type (`spec.trainer.config.dataset`). These functions add what needs more than the spec:

* the object's name, which becomes the Service name and the prefix of every pod hostname
  (`<job>-<index>`, and `<sweep>-<trial>-<index>` for sweep trials), so it must fit a DNS label;
* the environment names the operator and torchrun reserve in the trainer container (and the
  `TRAINSMART_PARAM_*` family a sweep trial's parameters use);
* a sweep's `${params.NAME}` placeholders: each must name a parameter, and each parameter must reach the
  trial somewhere (a `path` or a placeholder), or it would be searched for no effect;
* on updates, which fields may still change given the stored status.

Immutability, decided here once for the webhook and the docs:

TrainingJob. `replicas`, `gpusPerReplica`, `processesPerReplica` (compared as the effective count),
`trainer.image`, `trainer.command` and `trainer.config` (compared as the effective config) shape the DDP
world the pods were started with; changing them under running pods would leave the running attempt and the
next restart disagreeing. They are free until the job has started (`status.startTime` set, or phase
Running/Restarting/Succeeded/Failed: a job held suspended from creation, as Kueue does, never started), and
after that may change only while the job is suspended (`spec.suspend` true before or in the same update): no
pod runs then, and the resume starts every rank from the new spec, from the newest checkpoint.
`checkpoint` stays frozen once started, even when suspended, because it holds the state the job resumes
from: pointing it elsewhere would silently restart from epoch 0. A finished job (Succeeded/Failed) keeps
all of them frozen: resuming does not rerun it; a new TrainingJob does.

HyperparamSweep. Once a trial exists, `objective`, `algorithm`, `parameters` and `trialTemplate` are
frozen, suspended or not: the finished trials were measured under them, and the suggester rebuilds its
history from those trials. Limits (`maxTrials`, `parallelTrials`, `maxFailedTrials`, `budget`), early
stopping, retention and `suspend` stay editable, so a running sweep can be extended or throttled.

Updates that leave `spec` as it is (labels, annotations, finalizers) and updates of an object being
deleted are never refused: the operator's own bookkeeping and the removal of its finalizer must go through
even for an object stored under older, looser rules. Likewise, an update of an object whose stored spec no
longer parses is checked only as a new object, so the user can fix it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ValidationError

from trainsmart.api import HyperparamSweepSpec, TrainingJobPhase, TrainingJobSpec, format_validation_error
from trainsmart.api.placeholders import PlaceholderError, placeholder_names, placeholder_sites
from trainsmart.builders.env import is_reserved_env_name
from trainsmart.names import DNS_LABEL_MAX, KUEUE_QUEUE_LABEL, name_problems, pod_name, trial_name

STARTED_PHASES: Final = frozenset(
    {TrainingJobPhase.RUNNING, TrainingJobPhase.RESTARTING, TrainingJobPhase.SUCCEEDED, TrainingJobPhase.FAILED}
)
FINISHED_PHASES: Final = frozenset({TrainingJobPhase.SUCCEEDED, TrainingJobPhase.FAILED})
M = TypeVar("M", bound=BaseModel)
# Label syntax as the apiserver checks it on the pods (the CRD only bounds the length): a node selector
# the pods cannot carry was admitted and then failed every pod create (issue 13, found by tests/fuzz).
_LABEL_NAME_RE: Final = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_PREFIX_RE: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
SWEEP_FROZEN_FIELDS: Final = ("objective", "objectives", "algorithm", "parameters", "trialTemplate")
# Changed sub-paths named in one message at most; the rest are summarised ("and 3 more").
_MAX_PATHS_NAMED: Final = 3
MAX_SPEC_DEPTH: Final = 64
"""Objects and lists nested deeper than this under `spec` are refused (issue 13, found by tests/fuzz).

Free-form fields (affinity, volumes, security contexts) keep whatever the user writes, and pydantic's
serializer gives up at a few hundred levels ("Maximum serialization depth exceeded"): such a job passed
admission and then failed every reconcile. A real Kubernetes object is a dozen levels deep at most
(a pod affinity term is about ten below `spec`), so 64 levels leave ample room."""


@dataclass(frozen=True, order=True)
class Problem:
    """One reason to refuse an object: the field path (`spec.replicas`) and what is wrong with it."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def validate_trainingjob(
    new: Mapping[str, Any], old: Mapping[str, Any] | None = None, status: Mapping[str, Any] | None = None
) -> list[Problem]:
    """Every problem with a TrainingJob create (`old` None) or update (`status`: the stored status)."""
    if _is_bookkeeping(new, old):
        return []
    too_deep = _depth_problems(new.get("spec"), "spec")
    spec, problems = (None, too_deep) if too_deep else _parse(TrainingJobSpec, new.get("spec"), "spec")
    raw_spec = _mapping(new.get("spec"))
    replicas = spec.replicas if spec is not None else _positive_int(raw_spec.get("replicas"))
    name = _mapping(new.get("metadata")).get("name")
    if isinstance(name, str) and name:
        problems += [_name_problem(message) for message in name_problems(name, replicas)]
    problems += _reserved_env_problems(_mapping(raw_spec.get("trainer")).get("env"), "spec.trainer.env")
    problems += _pod_field_problems(raw_spec, "spec")
    if spec is not None and old is not None:
        old_spec, old_problems = _parse(TrainingJobSpec, old.get("spec"), "spec")
        if old_spec is not None and not old_problems:
            problems += _trainingjob_transition_problems(old_spec, spec, _mapping(status))
    return sorted(problems)


def validate_sweep(
    new: Mapping[str, Any], old: Mapping[str, Any] | None = None, status: Mapping[str, Any] | None = None
) -> list[Problem]:
    """Every problem with a HyperparamSweep create (`old` None) or update (`status`: the stored status)."""
    if _is_bookkeeping(new, old):
        return []
    too_deep = _depth_problems(new.get("spec"), "spec")
    spec, problems = (None, too_deep) if too_deep else _parse(HyperparamSweepSpec, new.get("spec"), "spec")
    raw_template = _mapping(_mapping(new.get("spec")).get("trialTemplate"))
    name = _mapping(new.get("metadata")).get("name")
    if isinstance(name, str) and name:
        replicas = spec.trial_template.replicas if spec else _positive_int(raw_template.get("replicas"))
        trials = spec.planned_trials() if spec else 1
        problems += _sweep_name_problems(name, max(trials, 1), replicas)
    env = _mapping(raw_template.get("trainer")).get("env")
    problems += _reserved_env_problems(env, "spec.trialTemplate.trainer.env")
    problems += _pod_field_problems(raw_template, "spec.trialTemplate")
    if spec is not None:
        problems += _placeholder_problems(spec)
    if old is not None and _sweep_has_trials(_mapping(status)):
        old_raw = _mapping(old.get("spec"))
        new_raw = _mapping(new.get("spec"))
        for field in SWEEP_FROZEN_FIELDS:
            changed = _changed_paths(old_raw.get(field), new_raw.get(field), f"spec.{field}")
            if changed:
                problems.append(
                    Problem(
                        f"spec.{field}",
                        f"cannot change once the sweep has trials ({_describe(changed)}): the finished "
                        "trials were measured under it; create a new HyperparamSweep instead",
                    )
                )
    return sorted(problems)


def trainingjob_warnings(new: Mapping[str, Any]) -> list[str]:
    """Legal but probably unintended settings, returned to kubectl as admission warnings."""
    try:
        spec = TrainingJobSpec.model_validate(new.get("spec"))
    except ValidationError:
        return []
    gpus, processes = spec.gpus_per_replica, spec.effective_processes_per_replica
    if gpus > processes:
        return [
            f"spec.processesPerReplica: {processes} process(es) per replica use {processes} of the {gpus} GPUs "
            f"each replica requests; {gpus - processes} per replica stay idle (leave processesPerReplica unset "
            "for one process per GPU)"
        ]
    return []


def format_problems(kind: str, name: str | None, problems: Sequence[Problem]) -> str:
    """The admission message: one problem per line, each starting with its field path."""
    subject = f"{kind} {name!r}" if name else kind
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    return f"{subject} is invalid ({count}):\n" + "\n".join(f"- {problem}" for problem in problems)


# -- helpers -----------------------------------------------------------------------------------------


def _is_bookkeeping(new: Mapping[str, Any], old: Mapping[str, Any] | None) -> bool:
    if old is None:
        return False
    deleting = _mapping(new.get("metadata")).get("deletionTimestamp") is not None
    return deleting or new.get("spec") == old.get("spec")


def _parse(model: type[M], data: Any, prefix: str) -> tuple[M | None, list[Problem]]:
    if not isinstance(data, Mapping):
        return None, [Problem(prefix, "is required and must be an object")]
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        return None, [_split(line, prefix) for line in format_validation_error(exc, prefix=prefix, model=model)]


def _depth_problems(value: Any, prefix: str, limit: int = MAX_SPEC_DEPTH) -> list[Problem]:
    """The first place where `value` nests objects and lists deeper than `limit`, as a problem at the
    top-level field that holds it. Iterative: a hostile object may be nested far beyond Python's
    recursion limit."""
    stack: list[tuple[Any, tuple[int | str, ...]]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        if len(path) > limit:
            return [Problem(_dotted(prefix, path[:2]), _too_deep_reason(prefix, path, limit))]
        if isinstance(node, Mapping):
            stack.extend((item, (*path, str(key))) for key, item in node.items())
        elif isinstance(node, list | tuple):
            stack.extend((item, (*path, index)) for index, item in enumerate(node))
    return []


def _too_deep_reason(prefix: str, path: Sequence[int | str], limit: int) -> str:
    return (
        f"is nested too deeply: more than {limit} levels of objects and lists below {prefix} (at "
        f"{_dotted(prefix, path[:4])}...); no Kubernetes object is this deep, check what generated it"
    )


def too_deep_message(prefix: str, path: Sequence[int | str], limit: int = MAX_SPEC_DEPTH) -> str:
    """`<field>: <reason>` for a value nested deeper than `limit` at `path` below `prefix`, as the
    admission rules word it (also for reviews too deep to decode: `admission/review_depth.py`)."""
    return f"{_dotted(prefix, path[:2])}: {_too_deep_reason(prefix, path, limit)}"


def _dotted(prefix: str, path: Sequence[int | str]) -> str:
    return prefix + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)


def _split(line: str, prefix: str) -> Problem:
    # format_validation_error writes `<path>: <message>` and paths never contain ": ".
    path, separator, reason = line.partition(": ")
    return Problem(path, reason) if separator else Problem(prefix, line)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _positive_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


def _name_problem(message: str) -> Problem:
    path, separator, reason = message.partition(" ")
    return Problem("metadata.name", reason if separator and path == "metadata.name" else message)


def _sweep_name_problems(name: str, trials: int, replicas: int) -> list[Problem]:
    # The format rule is the job's (the sweep name prefixes trial and Service names); the length rule
    # counts the longest trial's longest pod hostname, `<sweep>-<last trial>-<last replica>`.
    problems = [
        _name_problem(message) for message in name_problems(name, 1) if not message.startswith("metadata.name is too")
    ]
    longest = pod_name(trial_name(name, trials - 1), replicas - 1)
    if len(longest) > DNS_LABEL_MAX:
        allowed = DNS_LABEL_MAX - (len(longest) - len(name))
        problems.append(
            Problem(
                "metadata.name",
                f"is too long: trial pod hostname {longest!r} (trial {trials - 1}, replica {replicas - 1}) has "
                f"{len(longest)} characters, the limit is {DNS_LABEL_MAX}; shorten the name to {max(allowed, 0)} "
                "characters",
            )
        )
    return problems


def _reserved_env_problems(env: Any, path: str) -> list[Problem]:
    if not isinstance(env, Sequence) or isinstance(env, str):
        return []
    problems = []
    for index, var in enumerate(env):
        name = _mapping(var).get("name")
        if isinstance(name, str) and is_reserved_env_name(name):
            problems.append(
                Problem(
                    f"{path}[{index}].name",
                    f"{name} is reserved: the operator sets it for every replica (distributed layout, config, "
                    "checkpoints, report endpoint); remove it or use another name",
                )
            )
    return problems


_STANDARD_RESOURCES: Final = frozenset({"cpu", "memory", "ephemeral-storage"})


def _pod_field_problems(job: Mapping[str, Any], path: str) -> list[Problem]:
    """What the apiserver refuses on every replica pod although the CRD schema allows it: label syntax of
    node selectors and pod labels, annotation keys, resource names (issue 13, found by tests/fuzz: such a
    job was admitted and then failed every pod create)."""
    template = _mapping(job.get("template"))
    problems = _label_problems(job.get("nodeSelector"), f"{path}.nodeSelector")
    queue = job.get("queueName")
    if isinstance(queue, str) and (len(queue) > DNS_LABEL_MAX or not _LABEL_NAME_RE.fullmatch(queue)):
        # The pods carry it as the value of Kueue's queue-name label.
        problems.append(
            Problem(
                f"{path}.queueName",
                f"is not a label value (the pods carry it as {KUEUE_QUEUE_LABEL}): at most 63 characters",
            )
        )
    problems += _label_problems(template.get("labels"), f"{path}.template.labels")
    problems += _label_problems(template.get("annotations"), f"{path}.template.annotations", values=False)
    for kind in ("requests", "limits"):
        for name in _mapping(_mapping(job.get("resources")).get(kind)):
            qualified = "/" in str(name) and not _label_problems({name: ""}, "")
            if str(name) not in _STANDARD_RESOURCES and not str(name).startswith("hugepages-") and not qualified:
                problems.append(
                    Problem(
                        f"{path}.resources.{kind}[{json.dumps(str(name))}]",
                        "is not a resource name: cpu, memory, ephemeral-storage, hugepages-<size>, or a fully "
                        "qualified name such as example.com/device",
                    )
                )
    return problems


def _label_problems(selector: Any, path: str, values: bool = True) -> list[Problem]:
    """Keys (and `values`) that are no Kubernetes label keys and values."""
    if not isinstance(selector, Mapping):
        return []
    problems = []
    for key, value in selector.items():
        where = f"{path}[{json.dumps(str(key))}]"
        prefix, slash, name = str(key).rpartition("/")
        if (
            not _LABEL_NAME_RE.fullmatch(name)
            or len(name) > DNS_LABEL_MAX
            or (slash and (not _LABEL_PREFIX_RE.fullmatch(prefix) or len(prefix) > 253))
        ):
            problems.append(
                Problem(
                    where,
                    "is not a label key: [prefix/]name, the name at most 63 letters, digits, '-', '_' or '.' "
                    "starting and ending with a letter or digit, the prefix a DNS subdomain",
                )
            )
        if (
            values
            and isinstance(value, str)
            and value
            and (len(value) > DNS_LABEL_MAX or not _LABEL_NAME_RE.fullmatch(value))
        ):
            problems.append(
                Problem(
                    where,
                    "is not a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending "
                    "with a letter or digit (or empty)",
                )
            )
    return problems


def _placeholder_problems(spec: HyperparamSweepSpec) -> list[Problem]:
    """Placeholders that are malformed or name no parameter, and parameters that reach nothing."""
    names = [parameter.name for parameter in spec.parameters]
    listed = ", ".join(names)
    problems: list[Problem] = []
    used: set[str] = set()
    for site, text in placeholder_sites(spec.trial_template.to_api()):
        path = f"spec.trialTemplate.{site}"
        try:
            found = placeholder_names(text)
        except PlaceholderError as exc:
            problems.append(Problem(path, str(exc)))
            continue
        used.update(found)
        for name in dict.fromkeys(found):
            if name not in names:
                problems.append(Problem(path, f"${{params.{name}}} names no parameter; parameters are {listed}"))
    for index, parameter in enumerate(spec.parameters):
        if parameter.path is None and parameter.name not in used:
            problems.append(
                Problem(
                    f"spec.parameters[{index}] ({parameter.name})",
                    f"reaches nothing: it has no path and no ${{params.{parameter.name}}} in "
                    "trialTemplate.trainer.command, args or env values; add a path or a placeholder",
                )
            )
    return problems


def _job_progress(status: Mapping[str, Any]) -> tuple[bool, str | None]:
    """(started, finished phase or None) from a stored TrainingJob status."""
    phase = status.get("phase")
    started = bool(status.get("startTime")) or phase in STARTED_PHASES
    return started, (str(phase) if phase in FINISHED_PHASES else None)


def _trainingjob_frozen(spec: TrainingJobSpec) -> dict[str, Any]:
    """The fields that shape a started run, normalised so that equal meaning compares equal."""
    return {
        "spec.replicas": spec.replicas,
        "spec.gpusPerReplica": spec.gpus_per_replica,
        "spec.processesPerReplica": spec.effective_processes_per_replica,
        "spec.trainer.image": spec.trainer.image,
        "spec.trainer.command": spec.trainer.command,
        "spec.trainer.config": spec.trainer.effective_config().model_dump(mode="json", by_alias=True),
    }


def _trainingjob_transition_problems(
    old: TrainingJobSpec, new: TrainingJobSpec, status: Mapping[str, Any]
) -> list[Problem]:
    started, finished = _job_progress(status)
    if not started:
        return []
    problems = []
    old_checkpoint = old.checkpoint.to_api() if old.checkpoint else None
    new_checkpoint = new.checkpoint.to_api() if new.checkpoint else None
    changed = _changed_paths(old_checkpoint, new_checkpoint, "spec.checkpoint")
    if changed:
        problems.append(
            Problem(
                "spec.checkpoint",
                f"cannot change once the job has started, even while suspended ({_describe(changed)}): it "
                "holds the checkpoints the job resumes from; create a new TrainingJob to use other storage",
            )
        )
    suspended = old.suspend or new.suspend
    if suspended and finished is None:
        return problems
    before, after = _trainingjob_frozen(old), _trainingjob_frozen(new)
    for path, old_value in before.items():
        changed = _changed_paths(old_value, after[path], path)
        if not changed:
            continue
        if finished is not None:
            why = f"the job has finished ({finished}); create a new TrainingJob instead"
        else:
            why = "the job is running; suspend it first (spec.suspend: true), or create a new TrainingJob"
        problems.append(Problem(path, f"cannot change after the job has started ({_describe(changed)}): {why}"))
    return problems


def _sweep_has_trials(status: Mapping[str, Any]) -> bool:
    counts = _mapping(status.get("counts"))
    total = counts.get("total")
    return bool(status.get("trials")) or bool(status.get("startTime")) or (isinstance(total, int) and total > 0)


def _changed_paths(old: Any, new: Any, path: str) -> list[tuple[str, Any, Any]]:
    """(path, old, new) for each leaf where `old` and `new` differ (objects compared key by key)."""
    if old == new:
        return []
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        changes: list[tuple[str, Any, Any]] = []
        for key in sorted(set(old) | set(new)):
            changes += _changed_paths(old.get(key), new.get(key), f"{path}.{key}")
        return changes
    return [(path, old, new)]


def _describe(changes: Sequence[tuple[str, Any, Any]]) -> str:
    """`spec.replicas 2 -> 4, ...`: what changed, for the message (unset values shown as null)."""
    shown = [f"{path} {_show(old)} -> {_show(new)}" for path, old, new in changes[:_MAX_PATHS_NAMED]]
    rest = len(changes) - _MAX_PATHS_NAMED
    return ", ".join(shown) + (f" and {rest} more" if rest > 0 else "")


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
