"""The agent's list+watch loop against a scripted fake API (the real one is exercised by tests/e2e).

Pins:
- `start()` lists synchronously (paginated), then watches from the list's resourceVersion;
- events reach `on_event` in order; BOOKMARKs do not;
- a 410 Gone ERROR event makes it list again and watch from the new resourceVersion;
- a failing request is retried (with a relist) instead of ending the loop;
- the end of a watch (server timeout) is followed by a relist: level-based resync;
- `stop()` interrupts a watch that is waiting for events.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from trainsmart.devcluster.agent.kubeio import ListWatch


class FakeListResponse:
    def __init__(self, body: dict[str, Any]) -> None:
        self.data = json.dumps(body).encode()


class FakeWatchResponse:
    """Streams the given events in odd-sized chunks, then ends (or blocks until shut down)."""

    def __init__(self, events: list[dict[str, Any]], hang: bool) -> None:
        payload = b"".join(json.dumps(e).encode() + b"\n" for e in events)
        self._chunks = [payload[i : i + 7] for i in range(0, len(payload), 7)]
        self._hang = hang
        self._closed = threading.Event()

    def stream(self, amt: Any = None, decode_content: bool = False) -> Iterator[bytes]:
        yield from self._chunks
        if self._hang:
            self._closed.wait(10)
            raise ConnectionError("shut down")

    def shutdown(self) -> None:
        self._closed.set()

    def release_conn(self) -> None:
        pass


class FakeApi:
    """Answers lists from `lists` and watches from `watches`, in order; records every call."""

    def __init__(
        self, lists: list[dict[str, Any] | Exception], watches: list[list[dict[str, Any]] | Exception]
    ) -> None:
        self.lists, self.watches = lists, watches
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        if kwargs.get("watch"):
            item = self.watches.pop(0) if self.watches else []
            if isinstance(item, Exception):
                raise item
            return FakeWatchResponse(item, hang=not self.watches)
        answer = self.lists.pop(0) if len(self.lists) > 1 else self.lists[0]
        if isinstance(answer, Exception):
            raise answer
        return FakeListResponse(answer)


def page(rv: str, *names: str, cont: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": rv}
    if cont:
        meta["continue"] = cont
    return {"items": [{"metadata": {"name": n}} for n in names], "metadata": meta}


def event(kind: str, name: str, rv: str) -> dict[str, Any]:
    return {"type": kind, "object": {"metadata": {"name": name, "resourceVersion": rv}}}


GONE = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old resource version"}}


def run(api: FakeApi, until: Callable[[list[Any], list[Any]], bool]) -> tuple[list[Any], list[Any]]:
    listed: list[list[str]] = []
    events: list[tuple[str, str]] = []
    watch = ListWatch(
        "test",
        api,
        lambda items: listed.append([i["metadata"]["name"] for i in items]),
        lambda kind, obj: events.append((kind, obj["metadata"]["name"])),
        resync=30,
        field_selector="spec.nodeName!=",
    )
    watch.start()
    try:
        deadline = time.monotonic() + 10
        while not until(listed, events):
            assert time.monotonic() < deadline, (listed, events)
            time.sleep(0.01)
    finally:
        watch.stop()
    return listed, events


def test_list_then_watch_from_its_version() -> None:
    api = FakeApi(
        [page("10", "a", cont="next"), page("11", "b")],
        [[event("ADDED", "c", "12"), {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "13"}}}]],
    )
    listed, events = run(api, lambda _l, e: len(e) == 1)
    assert listed[0] == ["a", "b"]
    assert events == [("ADDED", "c")]
    watch_call = next(c for c in api.calls if c.get("watch"))
    assert watch_call["resource_version"] == "11"
    assert watch_call["field_selector"] == "spec.nodeName!="
    assert watch_call["allow_watch_bookmarks"] is True
    assert watch_call["timeout_seconds"] == 30


def test_gone_relists_and_watches_again() -> None:
    api = FakeApi(
        [page("5", "a"), page("20", "a", "b")],
        [[event("MODIFIED", "a", "6"), GONE], [event("DELETED", "a", "21")]],
    )
    listed, events = run(api, lambda _l, e: ("DELETED", "a") in e)
    assert listed[:2] == [["a"], ["a", "b"]]
    assert events == [("MODIFIED", "a"), ("DELETED", "a")]
    versions = [c["resource_version"] for c in api.calls if c.get("watch")]
    assert versions[:2] == ["5", "20"]


def test_failures_are_retried_and_a_finished_watch_relists() -> None:
    api = FakeApi(
        [page("1", "a"), ConnectionError("apiserver restarting"), page("3", "a")],
        [[], ConnectionError("reset"), [event("ADDED", "b", "4")]],
    )
    listed, events = run(api, lambda _l, e: ("ADDED", "b") in e)
    assert listed[0] == ["a"]
    assert len(listed) >= 2  # a relist after the watch ended and after each failure
    assert events == [("ADDED", "b")]


def test_stop_interrupts_a_waiting_watch() -> None:
    api = FakeApi([page("1")], [[]])
    watch = ListWatch("test", api, lambda _items: None, lambda _k, _o: None, resync=30)
    watch.start()
    time.sleep(0.1)
    started = time.monotonic()
    watch.stop()
    assert time.monotonic() - started < 2
