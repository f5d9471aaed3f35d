"""The run's final result in the container's termination message: the way it reaches the operator when no
report did.

The kubelet copies the file at the container's `terminationMessagePath` into the pod status when the
container exits, and the operator folds rank 0's message into the TrainingJob status when the final report
never arrived (endpoint unreachable, operator restarting). The packaged trainer writes its result there,
and so does the wrapper, so a custom job also ends with its final metrics whatever happened to its reports.

The kubelet keeps at most 4096 bytes and would cut a longer message mid-string, so the message is trimmed
to stay parseable JSON: the objective history's oldest half goes first until it fits, then the metrics
other than the objective, then the reason is shortened. The packaged trainer uses the same function, so
both write the same shape.

Where: TRAINSMART_TERMINATION_LOG when set (written when the file or its directory is writable), else the
kubelet's /dev/termination-log only when that file already exists and is writable: on a laptop /dev is not
ours to create files in. Writing never fails the run; a failure is logged.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

from trainsmart_client.job_env import DEFAULT_TERMINATION_LOG, TERMINATION_LOG

log = logging.getLogger("trainsmart_client")

MESSAGE_MAX_BYTES = 4096
"""The kubelet's limit per container (the contract's TERMINATION_MESSAGE_MAX_BYTES)."""


def _compact(fields: Mapping[str, Any]) -> str:
    return json.dumps(fields, separators=(",", ":"), sort_keys=True, allow_nan=False)


def termination_message(final: Mapping[str, Any], limit: int = MESSAGE_MAX_BYTES) -> str:
    """`final` (a FinalResult in its camelCase JSON form) as compact JSON within `limit` bytes."""
    fields = dict(final)
    text = _compact(fields)
    while len(text.encode()) > limit and fields.get("objectiveHistory"):
        history = fields["objectiveHistory"]
        fields["objectiveHistory"] = history[len(history) // 2 + 1 :]
        text = _compact(fields)
    if len(text.encode()) <= limit:
        return text
    objective = fields.get("objectiveMetric", "")
    fields["metrics"] = {name: value for name, value in (fields.get("metrics") or {}).items() if name == objective}
    text = _compact(fields)
    while len(text.encode()) > limit and fields.get("reason"):
        fields["reason"] = fields["reason"][: max(len(fields["reason"]) // 2, 0)]
        text = _compact(fields)
    return text


def termination_log_path(env: Mapping[str, str] | None = None) -> Path | None:
    """Where this container's termination message goes, or None when there is nowhere to write it."""
    env = os.environ if env is None else env
    named = env.get(TERMINATION_LOG)
    if named:
        path = Path(named)
        if path.is_file():
            return path if os.access(path, os.W_OK) else None
        parent = path.parent
        return path if parent.is_dir() and os.access(parent, os.W_OK) else None
    default = Path(DEFAULT_TERMINATION_LOG)
    return default if default.is_file() and os.access(default, os.W_OK) else None


def write_termination_message(final: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Path | None:
    """Write `final` to the termination log; the path written, or None (nowhere to write, or it failed)."""
    path = termination_log_path(env)
    if path is None:
        log.debug("no writable termination log: the final result is not written there")
        return None
    try:
        path.write_text(termination_message(final), encoding="utf-8")
    except (OSError, ValueError) as error:  # ValueError: a NaN that slipped in; JSON cannot carry it
        log.warning("cannot write the termination message to %s: %s", path, error)
        return None
    return path
