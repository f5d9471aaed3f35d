"""The MLflow planner and the TrackingReady condition, pure (no server: the real one is in
tests/cluster/test_operator_tracking.py).

Pins:
- spec.tracking: http(s) only, no credentials in the URI (the URI shows in status); the operator's default
  URI applies when the spec names none, the experiment defaults to the namespace; a sweep's trials inherit
  the sweep's tracking unless their template has its own;
- a job's run: tags namespace/job/attempt/sweep/trial/phase and its uid, the trial's parameters and the
  flattened trainer config as params, the objective history at step = epoch, every metric of epoch and
  final reports (progress reports left out), FINISHED/FAILED/KILLED by phase;
- sending is idempotent: only points above MLflow's highest step per key, only missing params (a changed
  value is reported, never sent: MLflow refuses it), only tags that differ; nothing at all once up to date;
- batches stay within MLflow's log-batch limits;
- a sweep's run: best-so-far per trial number over the finished prefix only; the best tag moves to the new
  best trial and leaves the old one; children are pointed at their parent;
- TrackingReady: True/False with the health's reason, Unknown while pending, kept through a restart's
  pending state, removed when tracking is no longer configured.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from support.manifests import random_lr_sweep_spec, sweep_body, trainingjob_body
from trainsmart.api import HyperparamSweep, TrainingJob, TrainingJobStatus
from trainsmart.api.conditions import TRACKING_READY, ConditionStatus, find_condition
from trainsmart.api.sweep_status import BestTrial, HyperparamSweepStatus, TrialRecord
from trainsmart.api.tracking_spec import MlflowTracking, TrackingSpec
from trainsmart.api.trainingjob_status import HistoryPoint, MetricsStatus, Progress
from trainsmart.builders.trial import build_trial
from trainsmart.names import PARAMETERS_ANNOTATION, STOPPED_ANNOTATION, SWEEP_NAME_LABEL, TRIAL_NUMBER_LABEL
from trainsmart.status.tracking_condition import TrackingHealth, TrackingState, with_tracking_condition
from trainsmart.tracking.mlflow_plan import (
    ATTEMPT_TAG,
    BEST_TAG,
    JOB_TAG,
    MAX_BATCH_ENTITIES,
    MAX_BATCH_METRICS,
    MAX_BATCH_PARAMS,
    PARENT_RUN_TAG,
    PHASE_TAG,
    SWEEP_TAG,
    SWEEP_UID_TAG,
    UID_TAG,
    MetricPoint,
    RemoteRun,
    RunStatus,
    after_update,
    child_tag_changes,
    job_run,
    plan_run_update,
    report_points,
    resolve_target,
    sweep_run,
)
from trainsmart_trainer.contract import TrainerReport

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
CONFIG = {"dataset": {"name": "digits"}, "epochs": 3, "learningRate": 0.01}


def trial_job(phase: str = "Running", **annotations: str) -> TrainingJob:
    body = trainingjob_body(
        "tune-1",
        {"trainer": {"config": CONFIG}},
        namespace="team",
        uid="job-uid",
        creationTimestamp="2026-01-02T03:00:00Z",
        labels={SWEEP_NAME_LABEL: "tune", TRIAL_NUMBER_LABEL: "1"},
        annotations={PARAMETERS_ANNOTATION: json.dumps({"lr": 0.01}), **annotations},
        ownerReferences=[{"kind": "HyperparamSweep", "name": "tune", "uid": "sweep-uid", "controller": True}],
    )
    return TrainingJob.model_validate(body)


def job_status(phase: str = "Running", history: tuple[float, ...] = (0.5, 0.7), restarts: int = 0) -> TrainingJobStatus:
    return TrainingJobStatus(
        phase=phase,
        restarts=restarts,
        progress=Progress(epoch=len(history), report_time=NOW),
        metrics=MetricsStatus(
            objective="val_accuracy",
            latest={"val_accuracy": history[-1], "val_loss": 0.3},
            history=[HistoryPoint(epoch=i + 1, value=v) for i, v in enumerate(history)],
        ),
        completion_time=NOW if phase in ("Succeeded", "Failed") else None,
    )


def report(kind: str, epoch: int, **metrics: float) -> TrainerReport:
    return TrainerReport.model_validate(
        {
            "job": {"namespace": "team", "name": "tune-1"},
            "kind": kind,
            "time": NOW.isoformat(),
            "epoch": epoch,
            "totalEpochs": 3,
            "metrics": metrics,
            "device": {"type": "cpu"},
            **({"final": {"status": "succeeded", "exitCode": 0}} if kind == "final" else {}),
        }
    )


# ---- spec ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("uri", ["ftp://mlflow", "mlflow:5000", "https://user:pw@mlflow.example.com", "http://a@b"])
def test_tracking_uri_must_be_http_without_credentials(uri: str) -> None:
    with pytest.raises(ValidationError):
        MlflowTracking(tracking_uri=uri)


def test_target_takes_the_spec_over_the_operator_default_and_defaults_the_experiment() -> None:
    job = TrainingJob.model_validate(trainingjob_body("a", {"tracking": {"mlflow": {"credentialsSecret": "creds"}}}))
    target = resolve_target(job.spec.tracking, "http://default:5000/", "team")
    assert target is not None and (target.uri, target.experiment, target.credentials_secret) == (
        "http://default:5000",
        "team",
        "creds",
    )
    own = MlflowTracking(tracking_uri="https://mine", experiment="exp")
    spec_target = resolve_target(TrackingSpec(mlflow=own), "http://default:5000", "team")
    assert spec_target is not None and (spec_target.uri, spec_target.experiment) == ("https://mine", "exp")
    assert resolve_target(None, None, "team") is None


def test_trials_inherit_the_sweeps_tracking_unless_their_template_has_one() -> None:
    tracking = {"mlflow": {"trackingUri": "http://mlflow:5000", "experiment": "tune"}}
    spec = random_lr_sweep_spec({"trainer": {"config": CONFIG}}, tracking=tracking)
    sweep = HyperparamSweep.model_validate(sweep_body("tune", spec, namespace="team", uid="s"))
    assert build_trial(sweep, 0, {"lr": 0.01})["spec"]["tracking"] == tracking
    own = {"mlflow": {"experiment": "other"}}
    spec["trialTemplate"]["tracking"] = own
    sweep = HyperparamSweep.model_validate(sweep_body("tune", spec, namespace="team", uid="s"))
    assert build_trial(sweep, 0, {"lr": 0.01})["spec"]["tracking"] == own


# ---- a job's run ---------------------------------------------------------------------------------------------


def test_a_trials_run_has_its_identity_params_and_objective_history() -> None:
    run = job_run(trial_job(), job_status(restarts=2), NOW)
    assert run.uid == "job-uid" and run.parent_uid == "sweep-uid" and run.run_name == "tune-1"
    assert {k: run.tags[k] for k in (UID_TAG, JOB_TAG, ATTEMPT_TAG, SWEEP_TAG, PHASE_TAG, SWEEP_UID_TAG)} == {
        UID_TAG: "job-uid",
        JOB_TAG: "tune-1",
        ATTEMPT_TAG: "2",
        SWEEP_TAG: "tune",
        PHASE_TAG: "Running",
        SWEEP_UID_TAG: "sweep-uid",
    }
    assert run.params["lr"] == "0.01" and run.params["config.learningRate"] == "0.01"
    assert run.params["config.dataset.name"] == "digits" and run.params["replicas"] == "1"
    assert [(p.key, p.step, p.value) for p in run.metrics] == [("val_accuracy", 1, 0.5), ("val_accuracy", 2, 0.7)]
    assert run.status == RunStatus.RUNNING and run.end_time_ms is None


@pytest.mark.parametrize(
    ("phase", "stopped", "expected"),
    [
        ("Succeeded", None, RunStatus.FINISHED),
        ("Failed", None, RunStatus.FAILED),
        ("Suspended", "EarlyStopped", RunStatus.KILLED),
        ("Suspended", None, RunStatus.RUNNING),
    ],
)
def test_run_status_follows_the_phase(phase: str, stopped: str | None, expected: RunStatus) -> None:
    job = trial_job(**({STOPPED_ANNOTATION: stopped} if stopped else {}))
    run = job_run(job, job_status(phase), NOW)
    assert run.status == expected
    assert (run.end_time_ms is not None) == (expected in (RunStatus.FINISHED, RunStatus.FAILED))


def test_an_ended_job_logs_its_latest_values_at_the_last_epoch() -> None:
    run = job_run(trial_job(), job_status("Succeeded"), NOW)
    assert MetricPoint("val_loss", 2, 0.3, int(NOW.timestamp() * 1000)) in run.metrics


def test_report_points_are_every_metric_of_epoch_and_final_reports() -> None:
    points = report_points(
        [
            report("progress", 1, train_loss=9.0),
            report("epoch", 1, val_loss=0.4, train_loss=0.5),
            report("final", 2, val_loss=0.3),
        ]
    )
    assert [(p.key, p.step, p.value) for p in points] == [
        ("train_loss", 1, 0.5),
        ("val_loss", 1, 0.4),
        ("val_loss", 2, 0.3),
    ]


# ---- what to send --------------------------------------------------------------------------------------------


def test_only_new_steps_missing_params_and_changed_tags_are_sent() -> None:
    desired = job_run(trial_job(), job_status(history=(0.5, 0.7, 0.8)), NOW)
    remote = RemoteRun(
        "run-1",
        params={**desired.params, "lr": "0.02"},
        tags={**desired.tags, PHASE_TAG: "Pending"},
        last_steps={"val_accuracy": 2},
    )
    update = plan_run_update(desired, remote, [MetricPoint("val_loss", 1, 0.4)], parent_run_id="parent")
    (batch,) = update.batches
    assert [(p.key, p.step) for p in batch.metrics] == [("val_accuracy", 3), ("val_loss", 1)]
    assert batch.params == () and update.conflicting_params == ("lr",)
    assert dict(batch.tags) == {PARENT_RUN_TAG: "parent", PHASE_TAG: "Running"}
    assert update.status is None
    done = after_update(remote, update)
    again = plan_run_update(desired, done, [MetricPoint("val_loss", 1, 0.4)], parent_run_id="parent")
    assert again.empty


def test_an_ended_run_gets_its_status_and_end_time_once() -> None:
    desired = job_run(trial_job(), job_status("Failed"), NOW)
    update = plan_run_update(desired, RemoteRun("r", tags=dict(desired.tags), params=dict(desired.params)))
    assert update.status == RunStatus.FAILED and update.end_time_ms == int(NOW.timestamp() * 1000)
    assert plan_run_update(desired, after_update(RemoteRun("r"), update)).status is None


def test_batches_respect_mlflows_limits() -> None:
    desired = job_run(trial_job(), job_status(), NOW)
    params = {f"p{i}": str(i) for i in range(250)}
    desired = type(desired)(**{**desired.__dict__, "params": params})
    points = [MetricPoint("loss", step, 0.1) for step in range(2500)]
    update = plan_run_update(desired, RemoteRun("r"), points)
    for batch in update.batches:
        assert len(batch.params) <= MAX_BATCH_PARAMS and len(batch.metrics) <= MAX_BATCH_METRICS
        assert len(batch.params) + len(batch.tags) + len(batch.metrics) <= MAX_BATCH_ENTITIES
    assert sum(len(b.params) for b in update.batches) == 250
    assert sum(len(b.metrics) for b in update.batches) == 2500 + 2


# ---- a sweep's run -------------------------------------------------------------------------------------------


def sweep_and_status(finished: dict[int, float | None], running: tuple[int, ...] = ()) -> tuple[Any, Any]:
    spec = random_lr_sweep_spec({"trainer": {"config": CONFIG}})
    sweep = HyperparamSweep.model_validate(sweep_body("tune", spec, namespace="team", uid="sweep-uid"))
    rows = [
        TrialRecord(name=f"tune-{n}", number=n, phase="Succeeded", metric_value=value) for n, value in finished.items()
    ]
    rows += [TrialRecord(name=f"tune-{n}", number=n, phase="Running") for n in running]
    best = max((r for r in rows if r.metric_value is not None), key=lambda r: r.metric_value or 0, default=None)
    status = HyperparamSweepStatus(
        phase="Running",
        trials=sorted(rows, key=lambda r: r.number),
        best_trial=BestTrial(name=best.name, metric_value=best.metric_value) if best and best.metric_value else None,
    )
    return sweep, status


def test_sweep_run_logs_best_so_far_over_the_finished_prefix_only() -> None:
    sweep, status = sweep_and_status({0: 0.6, 1: None, 3: 0.9}, running=(2,))
    run = sweep_run(sweep, status, NOW)
    assert [(p.key, p.step, p.value) for p in run.metrics] == [
        ("best_val_accuracy", 0, 0.6),
        ("best_val_accuracy", 1, 0.6),
    ]
    assert run.params["objective.metric"] == "val_accuracy" and run.params["space.lr"].startswith("loguniform(")
    assert run.best_child == "tune-3" and run.status == RunStatus.RUNNING


def test_the_best_tag_moves_and_children_point_at_their_parent() -> None:
    children = [
        RemoteRun("r0", tags={JOB_TAG: "tune-0", BEST_TAG: "true", PARENT_RUN_TAG: "p"}),
        RemoteRun("r1", tags={JOB_TAG: "tune-1"}),
    ]
    changes = child_tag_changes(children, "p", "tune-1")
    assert {(c.run_id, c.key, c.value) for c in changes} == {
        ("r0", BEST_TAG, None),
        ("r1", PARENT_RUN_TAG, "p"),
        ("r1", BEST_TAG, "true"),
    }


# ---- TrackingReady -------------------------------------------------------------------------------------------


def test_tracking_ready_condition_follows_the_health() -> None:
    status = job_status()
    pending = with_tracking_condition(status, TrackingHealth(TrackingState.PENDING, "waiting"), NOW)
    assert find_condition(pending.conditions, TRACKING_READY).status == ConditionStatus.UNKNOWN  # type: ignore[union-attr]
    down = with_tracking_condition(pending, TrackingHealth(TrackingState.UNREACHABLE, "no answer"), NOW)
    condition = find_condition(down.conditions, TRACKING_READY)
    assert condition is not None and (condition.status, condition.reason) == (
        ConditionStatus.FALSE,
        "TrackingUnreachable",
    )
    # After an operator restart the sync is pending again: the stored word stays until it knows better.
    kept = with_tracking_condition(down, TrackingHealth(TrackingState.PENDING, "waiting"), NOW + timedelta(1))
    assert kept.conditions == down.conditions
    up = with_tracking_condition(kept, TrackingHealth(TrackingState.SYNCED, "run r"), NOW + timedelta(2))
    condition = find_condition(up.conditions, TRACKING_READY)
    assert condition is not None and condition.status == ConditionStatus.TRUE
    assert condition.last_transition_time == NOW + timedelta(2)
    assert find_condition(with_tracking_condition(up, None, NOW).conditions, TRACKING_READY) is None
