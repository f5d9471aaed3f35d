"""Ending the MLflow run of a deleted object, and the count of dropped points; the sync against an
in-process stand-in for MLflow's REST API (the real server is in tests/cluster/test_operator_tracking.py).

Pins:
- pure: a deleted object's open run (RUNNING, or KILLED by a sweep's stop) ends KILLED at the deletion
  time, tagged trainsmart.dev/deleted; a FINISHED or FAILED run keeps its status and end time; once
  MLflow holds the closing run, nothing more is sent;
- the sync: `forget` of a running job ends its run KILLED with an end time, with the points still waiting;
  a finished, synced job's deletion sends nothing; a deleted job whose run was never created gets none,
  even once the server is back; a server that stays away is given up on after the close deadline;
- points dropped from a full queue are counted (by kind) through `on_dropped`.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from support.manifests import trainingjob_body
from trainsmart.api import TrainingJob, TrainingJobStatus
from trainsmart.api.trainingjob_status import HistoryPoint, MetricsStatus, Progress
from trainsmart.report_endpoint import JobKey
from trainsmart.status.tracking_condition import TrackingState
from trainsmart.tracking.mlflow_plan import (
    DELETED_TAG,
    UID_TAG,
    MetricPoint,
    MlflowTarget,
    RemoteRun,
    RunStatus,
    after_update,
    closing_run,
    job_run,
    plan_run_update,
)
from trainsmart.tracking.mlflow_sync import TrackedKind, TrackingSync

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
DELETED_AT = datetime(2026, 1, 2, 4, 0, 0, tzinfo=UTC)
KEY = JobKey("team", "mnist")


def job(uri: str) -> TrainingJob:
    spec = {"trainer": {"config": {"epochs": 3}}, "tracking": {"mlflow": {"trackingUri": uri, "experiment": "e"}}}
    return TrainingJob.model_validate(trainingjob_body("mnist", spec, namespace="team", uid="job-uid"))


def status(phase: str = "Running", history: tuple[float, ...] = (0.5, 0.7)) -> TrainingJobStatus:
    return TrainingJobStatus(
        phase=phase,
        progress=Progress(epoch=len(history), report_time=NOW),
        metrics=MetricsStatus(
            objective="val_accuracy",
            latest={"val_accuracy": history[-1]},
            history=[HistoryPoint(epoch=i + 1, value=v) for i, v in enumerate(history)],
        ),
        completion_time=NOW if phase in ("Succeeded", "Failed") else None,
    )


# ---- pure -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("phase", "expected"), [("Running", RunStatus.KILLED), ("Pending", RunStatus.KILLED)])
def test_an_open_run_of_a_deleted_object_ends_killed_at_the_deletion(phase: str, expected: RunStatus) -> None:
    desired = job_run(job("http://mlflow"), status(phase), NOW)
    closing = closing_run(desired, DELETED_AT)
    assert closing.status == expected
    assert closing.end_time_ms == int(DELETED_AT.timestamp() * 1000)
    assert closing.tags[DELETED_TAG] == "true" and closing.tags[UID_TAG] == "job-uid"
    remote = RemoteRun("run-1", tags=dict(desired.tags))
    update = plan_run_update(closing, remote)
    assert update.status == RunStatus.KILLED and update.end_time_ms == closing.end_time_ms
    assert plan_run_update(closing, after_update(remote, update)).empty  # nothing twice


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_an_ended_run_keeps_its_status_when_its_object_is_deleted(phase: str) -> None:
    desired = job_run(job("http://mlflow"), status(phase), NOW)
    assert closing_run(desired, DELETED_AT) == desired


# ---- the sync, against a stand-in for MLflow's REST API ------------------------------------------------------


@dataclass
class FakeMlflow:
    """Just enough of MLflow's REST API for one experiment; `down` answers 503 to everything."""

    uri: str = ""
    down: bool = False
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    ids: itertools.count[int] = field(default_factory=itertools.count)

    def view(self, run_id: str) -> dict[str, Any]:
        run = self.runs[run_id]
        metrics = [{"key": k, "value": v, "step": s} for k, (s, v) in run["metrics"].items()]
        tags = [{"key": k, "value": v} for k, v in run["tags"].items()]
        info = {"run_id": run_id, "status": run["status"], "end_time": run["end_time"], "start_time": 0}
        return {"info": info, "data": {"metrics": metrics, "tags": tags, "params": []}}

    async def handle(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        self.calls.append(path)
        if self.down:
            return web.json_response({}, status=503)
        body = await request.json() if request.method == "POST" else {}
        if path == "experiments/get-by-name":
            return web.json_response({"experiment": {"experiment_id": "1"}})
        if path == "runs/search":
            uid = body["filter"].split("'")[1]
            found = [self.view(i) for i, run in self.runs.items() if run["tags"].get(UID_TAG) == uid]
            return web.json_response({"runs": found})
        if path == "runs/create":
            run_id = f"run-{next(self.ids)}"
            tags = {t["key"]: t["value"] for t in body["tags"]}
            self.runs[run_id] = {"status": "RUNNING", "end_time": None, "tags": tags, "metrics": {}, "steps": []}
            return web.json_response({"run": self.view(run_id)})
        run = self.runs[body["run_id"]]
        if path == "runs/log-batch":
            run["tags"].update({t["key"]: t["value"] for t in body["tags"]})
            for m in body["metrics"]:
                run["steps"].append((m["key"], m["step"]))
                if m["step"] >= run["metrics"].get(m["key"], (-1, 0))[0]:
                    run["metrics"][m["key"]] = (m["step"], m["value"])
        elif path == "runs/update":
            run["status"], run["end_time"] = body["status"], body.get("end_time")
        return web.json_response({})


@pytest_asyncio.fixture
async def mlflow() -> AsyncIterator[FakeMlflow]:
    fake = FakeMlflow()
    app = web.Application()
    app.router.add_route("*", "/api/2.0/mlflow/{path:.+}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.uri = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()


async def no_secret(namespace: str, name: str) -> None:
    return None


def new_sync(**options: Any) -> TrackingSync:
    options = {"backoff_first": 0.05, "backoff_max": 0.1, "clock": lambda: DELETED_AT, **options}
    return TrackingSync(no_secret, lambda kind, key: None, **options)


async def until(condition: Any, limit: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def synced(sync: TrackingSync) -> bool:
    health = sync.health(TrackedKind.JOB, KEY)
    return health is not None and health.state == TrackingState.SYNCED and not any(r.task for r in sync._runs.values())


@pytest.mark.asyncio
async def test_deleting_a_running_job_ends_its_run_killed_with_the_waiting_points(mlflow: FakeMlflow) -> None:
    sync = new_sync()
    await sync.start()
    try:
        sync.offer_job(KEY, job(mlflow.uri), status())
        await until(lambda: synced(sync))
        (run_id,) = mlflow.runs
        assert mlflow.runs[run_id]["status"] == "RUNNING"
        mlflow.down = True  # the last epoch's points wait in the queue
        sync.offer_job(KEY, job(mlflow.uri), status(history=(0.5, 0.7, 0.8)))
        await until(lambda: sync.health(TrackedKind.JOB, KEY).state == TrackingState.UNREACHABLE)  # type: ignore[union-attr]
        mlflow.down = False
        sync.forget(TrackedKind.JOB, KEY)
        assert sync.health(TrackedKind.JOB, KEY) is None
        await until(lambda: not sync._closing)
    finally:
        await sync.stop()
    run = mlflow.runs[run_id]
    assert run["status"] == "KILLED" and run["end_time"] == int(DELETED_AT.timestamp() * 1000)
    assert run["tags"][DELETED_TAG] == "true"
    assert run["metrics"]["val_accuracy"] == (3, 0.8)
    assert len(mlflow.runs) == 1


@pytest.mark.asyncio
async def test_deleting_a_finished_synced_job_sends_nothing(mlflow: FakeMlflow) -> None:
    sync = new_sync()
    await sync.start()
    try:
        sync.offer_job(KEY, job(mlflow.uri), status("Succeeded"))
        await until(lambda: synced(sync))
        before = list(mlflow.calls)
        sync.forget(TrackedKind.JOB, KEY)
        assert not sync._closing
    finally:
        await sync.stop()
    assert mlflow.calls == before
    assert [run["status"] for run in mlflow.runs.values()] == ["FINISHED"]


@pytest.mark.asyncio
async def test_a_deleted_job_whose_run_was_never_created_gets_none(mlflow: FakeMlflow) -> None:
    mlflow.down = True
    sync = new_sync()
    await sync.start()
    try:
        sync.offer_job(KEY, job(mlflow.uri), status())
        await until(lambda: sync.health(TrackedKind.JOB, KEY).state == TrackingState.UNREACHABLE)  # type: ignore[union-attr]
        sync.forget(TrackedKind.JOB, KEY)
        calls = len(mlflow.calls)
        await until(lambda: len(mlflow.calls) > calls)  # the close is retried while the server is away
        mlflow.down = False
        await until(lambda: not sync._closing)
    finally:
        await sync.stop()
    assert mlflow.runs == {}
    assert mlflow.calls[-1] == "runs/search"


@pytest.mark.asyncio
async def test_a_server_that_stays_away_is_given_up_on_after_the_close_deadline(mlflow: FakeMlflow) -> None:
    mlflow.down = True
    sync = new_sync(close_deadline=0.3)
    await sync.start()
    try:
        sync.offer_job(KEY, job(mlflow.uri), status())
        await until(lambda: sync.health(TrackedKind.JOB, KEY).state == TrackingState.UNREACHABLE)  # type: ignore[union-attr]
        sync.forget(TrackedKind.JOB, KEY)
        assert sync._closing
        await until(lambda: not sync._closing, limit=2.0)
    finally:
        await sync.stop()


@pytest.mark.asyncio
async def test_points_dropped_from_a_full_queue_are_counted_by_kind(mlflow: FakeMlflow) -> None:
    mlflow.down = True
    dropped: list[tuple[TrackedKind, int]] = []
    sync = new_sync(max_points=3, on_dropped=lambda kind, n: dropped.append((kind, n)))
    await sync.start()
    try:
        points = [MetricPoint("val_loss", step, 0.1) for step in range(5)]
        sync._offer(
            TrackedKind.JOB, KEY, MlflowTarget(mlflow.uri, "e"), job_run(job(mlflow.uri), status(), NOW), points
        )
        await until(lambda: sync.health(TrackedKind.JOB, KEY).state == TrackingState.UNREACHABLE)  # type: ignore[union-attr]
    finally:
        await sync.stop()
    assert dropped and {kind for kind, _ in dropped} == {TrackedKind.JOB}
    assert sum(n for _, n in dropped) == 2
