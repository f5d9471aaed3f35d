"""What the TrainingJob and HyperparamSweep controllers share: reading, echo tracking, the status write,
Events, and the invalid-spec path.

Both reconciles have one shape (read -> parse -> derive -> plan -> patch status if changed -> act), and
the parts of it that do not depend on the kind live here once, so the two cannot drift apart:

* the stored status is parsed leniently (unreadable: rebuilt, never a crash loop);
* one status merge-patch per reconcile, only when the derived status differs, carrying the
  resourceVersion it was derived from (a conflict means "derive again", never "overwrite");
* the watch event of that patch is recognised by its resourceVersion and ignored, or every patch would
  cause another reconcile;
* a spec that does not parse gets InvalidSpec (every problem listed) and its Event, and nothing else
  until the spec changes, which is an event of its own: no requeue, no retry storm.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Generic, Protocol, TypeVar

import pydantic

from trainsmart.api.conditions import StatusEvent
from trainsmart.kube import Kube, ObjectRef, StatusConflictError, merge_patch
from trainsmart.report_endpoint import JobKey

log = logging.getLogger(__name__)

RESYNC_S: Final = 60.0
"""Reconcile an unfinished object at least this often, events or not (GPU time, budgets, a lost event)."""


class StatusModel(Protocol):
    """A kind's status model: parsed from the stored dict, written back as one."""

    def to_api(self) -> dict[str, Any]: ...


StatusT = TypeVar("StatusT", bound=StatusModel)
InvalidStatus = Callable[[StatusT | None, int | None, Sequence[str], datetime], StatusT]
"""(stored status, generation, problems, now) -> the status with InvalidSpec True."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def object_key(body: Mapping[str, Any]) -> JobKey:
    meta = body.get("metadata") or {}
    return JobKey(str(meta.get("namespace", "")), str(meta.get("name", "")))


def resource_version(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("resourceVersion", ""))


def generation_of(body: Mapping[str, Any]) -> int | None:
    generation = (body.get("metadata") or {}).get("generation")
    return generation if isinstance(generation, int) else None


class ControllerCore(Generic[StatusT]):
    """The kind-independent half of a controller: `plural` names the kind, `model` parses its status."""

    def __init__(
        self,
        kube: Kube,
        plural: str,
        model: type[StatusT],
        *,
        clock: Callable[[], datetime] = utc_now,
        on_gone: Callable[[JobKey], None] | None = None,
    ) -> None:
        self.kube = kube
        self.plural = plural
        self.model = model
        self.clock = clock
        self.on_gone = on_gone
        """Called when the object turned out to be gone: the controller drops what it remembers of it."""
        self._written_versions: dict[JobKey, str] = {}

    async def read(self, key: JobKey) -> dict[str, Any] | None:
        """The object as stored now, or None when it does not exist (what it remembers is dropped then)."""
        body = await self.kube.get_object(self.plural, key.namespace, key.name)
        if body is None:
            self._gone(key)
        return body

    def previous_status(self, body: Mapping[str, Any]) -> StatusT | None:
        """The stored status, or None when there is none or it does not parse (it is then rebuilt)."""
        raw = body.get("status")
        if not raw:
            return None
        try:
            parsed: StatusT = self.model.model_validate(raw)  # type: ignore[attr-defined]
        except pydantic.ValidationError:
            name = (body.get("metadata") or {}).get("name")
            log.warning("ignoring an unreadable status on %s %s", self.plural, name)
            return None
        return parsed

    def is_own_echo(self, key: JobKey, body: Mapping[str, Any]) -> bool:
        """True for the watch event of this controller's own last status patch (nothing new to react to)."""
        version = (body.get("metadata") or {}).get("resourceVersion")
        return version is not None and self._written_versions.get(key) == version

    def forget(self, key: JobKey) -> None:
        self._written_versions.pop(key, None)

    def _gone(self, key: JobKey) -> None:
        self.forget(key)
        if self.on_gone is not None:
            self.on_gone(key)

    async def write_status(
        self, key: JobKey, body: Mapping[str, Any], previous: StatusT | None, status: StatusT
    ) -> bool | None:
        """Patch the status if it differs from `previous`: True when patched, False when unchanged, None
        when the object is gone. StatusConflictError propagates: the caller derives again."""
        old = previous.to_api() if previous is not None else {}
        new = status.to_api()
        if old == new:
            return False
        patch = merge_patch(old, new)
        updated = await self.kube.patch_status(self.plural, key.namespace, key.name, resource_version(body), patch)
        if updated is None:
            self._gone(key)
            return None
        self._written_versions[key] = resource_version(updated)
        return True

    async def post_events(self, body: Mapping[str, Any], events: Sequence[StatusEvent]) -> None:
        ref = ObjectRef.of(body)
        for event in events:
            await self.kube.post_event(ref, event.type, event.reason, event.message)

    async def reconcile_invalid(
        self,
        key: JobKey,
        body: Mapping[str, Any],
        previous: StatusT | None,
        problems: Sequence[str],
        invalid_status: InvalidStatus[StatusT],
        events: Callable[[StatusT | None, StatusT], Sequence[StatusEvent]],
        now: datetime | None = None,
    ) -> float | None:
        """InvalidSpec (True, every problem listed) plus its Event; nothing else happens until the spec
        changes. Returns the requeue delay: 0 after a conflict (derive again), else None."""
        status = invalid_status(previous, generation_of(body), problems, now or self.clock())
        try:
            written = await self.write_status(key, body, previous, status)
        except StatusConflictError:
            return 0.0
        if written:
            await self.post_events(body, events(previous, status))
        return None
