"""Pod status derivation, the kubelet's rules as pure functions.

Pins:
- the phase for every mix of container states under each restart policy (table);
- a container waiting to restart counts as stopped with the outcome of its last exit;
- init containers: pending until all succeeded; a failed one fails the pod only under Never;
- a pod-level failure wins over container states and is written as reason/message;
- Ready/ContainersReady are True exactly when every app container runs and the pod is not terminal;
- a condition's lastTransitionTime moves only when its status does; PodScheduled is carried through;
- container statuses: state/lastState shapes, Completed/Error reasons, `trainsmart://<pid>` IDs;
- status_patch returns None when nothing changed;
- adopting a previous agent's status: running -> killed (137), restart counts kept, terminated kept;
- restart policy per exit code, init containers included; deletion grace floors at 2 s;
- Events name the container by fieldPath and are signed by the node, as a kubelet's.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from trainsmart.devcluster.agent import podstatus as ps

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(seconds=5)


def waiting() -> ps.ContainerRecord:
    return ps.ContainerRecord("c", "img")


def running() -> ps.ContainerRecord:
    return ps.ContainerRecord("c", "img", ps.Running(T0), pid=42)


def exited(code: int) -> ps.ContainerRecord:
    return ps.ContainerRecord("c", "img", ps.Terminated(code, T0, T1), pid=42)


def restarting(last_code: int) -> ps.ContainerRecord:
    return ps.ContainerRecord(
        "c", "img", ps.Waiting("CrashLoopBackOff"), last_terminated=ps.Terminated(last_code, T0, T1), restart_count=1
    )


def view(policy: str, *containers: ps.ContainerRecord, init: tuple[ps.ContainerRecord, ...] = ()) -> ps.PodView:
    return ps.PodView(policy, list(init), list(containers), host_ip="10.0.0.1", pod_ip="10.1.0.5", start_time=T0)


@pytest.mark.parametrize(
    ("policy", "containers", "phase"),
    [
        ("Never", [waiting()], "Pending"),
        ("Never", [running()], "Running"),
        ("Never", [running(), waiting()], "Pending"),
        ("Never", [exited(0)], "Succeeded"),
        ("Never", [exited(3)], "Failed"),
        ("Never", [exited(0), exited(1)], "Failed"),
        ("Never", [exited(0), running()], "Running"),
        ("OnFailure", [exited(0)], "Succeeded"),
        ("OnFailure", [exited(0), exited(0)], "Succeeded"),
        ("OnFailure", [restarting(1)], "Running"),
        ("OnFailure", [exited(0), restarting(2)], "Running"),
        ("Always", [exited(0)], "Running"),
        ("Always", [restarting(0)], "Running"),
        ("Always", [restarting(1), running()], "Running"),
        ("Always", [], "Pending"),
    ],
)
def test_phase_table(policy: str, containers: list[ps.ContainerRecord], phase: str) -> None:
    assert ps.derive_phase(view(policy, *containers)) == phase


@pytest.mark.parametrize(
    ("policy", "init", "phase"),
    [
        ("Never", (waiting(),), "Pending"),
        ("Never", (running(),), "Pending"),
        ("Never", (exited(1),), "Failed"),
        ("OnFailure", (restarting(1),), "Pending"),
        ("Always", (exited(0), waiting()), "Pending"),
    ],
)
def test_init_containers_gate_the_phase(policy: str, init: tuple[ps.ContainerRecord, ...], phase: str) -> None:
    assert ps.derive_phase(view(policy, waiting(), init=init)) == phase


def test_init_done_lets_app_containers_decide() -> None:
    assert ps.derive_phase(view("Never", running(), init=(exited(0),))) == "Running"


def test_pod_level_failure_wins_and_is_reported() -> None:
    v = ps.PodView("Always", [], [running()], host_ip="h", failure=("UnexpectedAdmissionError", "no GPUs"))
    status = ps.derive_pod_status(v, [], T1)
    assert status["phase"] == "Failed"
    assert (status["reason"], status["message"]) == ("UnexpectedAdmissionError", "no GPUs")


def conditions_by_type(status: dict[str, object]) -> dict[str, dict[str, object]]:
    conds = status["conditions"]
    assert isinstance(conds, list)
    return {c["type"]: c for c in conds}


def test_running_pod_is_ready_with_ips_and_start_time() -> None:
    status = ps.derive_pod_status(view("Never", running()), [], T1)
    conds = conditions_by_type(status)
    assert {k: c["status"] for k, c in conds.items()} == {
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
        "PodScheduled": "True",
    }
    assert status["podIP"] == "10.1.0.5"
    assert status["podIPs"] == [{"ip": "10.1.0.5"}]
    assert status["hostIP"] == "10.0.0.1"
    assert status["startTime"] == "2024-05-01T12:00:00Z"
    assert status["reason"] is None  # clears an earlier failure in a merge patch


def test_unready_conditions_name_the_containers() -> None:
    other = ps.ContainerRecord("sidecar", "img")
    status = ps.derive_pod_status(view("Never", running(), other), [], T1)
    ready = conditions_by_type(status)["Ready"]
    assert ready["status"] == "False"
    assert ready["reason"] == "ContainersNotReady"
    assert ready["message"] == "containers with unready status: [sidecar]"


def test_finished_pod_is_not_ready_with_pod_completed() -> None:
    status = ps.derive_pod_status(view("Never", exited(0)), [], T1)
    ready = conditions_by_type(status)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "PodCompleted")
    assert status["containerStatuses"][0]["ready"] is False


def test_transition_time_moves_only_with_status() -> None:
    first = ps.derive_pod_status(view("Never", running()), [], T0)
    later = ps.derive_pod_status(view("Never", running()), first["conditions"], T1)
    assert later["conditions"] == first["conditions"]
    done = ps.derive_pod_status(view("Never", exited(0)), first["conditions"], T1)
    conds = conditions_by_type(done)
    assert conds["Ready"]["lastTransitionTime"] == "2024-05-01T12:00:05Z"
    assert conds["Initialized"]["lastTransitionTime"] == "2024-05-01T12:00:00Z"


def test_pod_scheduled_is_carried_through() -> None:
    scheduled = {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}
    status = ps.derive_pod_status(view("Never", running()), [scheduled], T1)
    assert conditions_by_type(status)["PodScheduled"]["lastTransitionTime"] == "2024-01-01T00:00:00Z"


def test_container_status_shapes() -> None:
    run = ps.container_status(running(), ready=True)
    assert run["state"] == {"running": {"startedAt": "2024-05-01T12:00:00Z"}}
    assert run["containerID"] == "trainsmart://42"
    assert run["lastState"] == {}
    assert (run["ready"], run["started"], run["restartCount"]) == (True, True, 0)

    err = ps.container_status(exited(3), ready=False)
    assert err["state"]["terminated"] == {
        "exitCode": 3,
        "reason": "Error",
        "startedAt": "2024-05-01T12:00:00Z",
        "finishedAt": "2024-05-01T12:00:05Z",
    }
    assert ps.container_status(exited(0), ready=False)["state"]["terminated"]["reason"] == "Completed"

    again = ps.container_status(restarting(1), ready=False)
    assert again["state"] == {"waiting": {"reason": "CrashLoopBackOff"}}
    assert again["lastState"]["terminated"]["exitCode"] == 1
    assert again["restartCount"] == 1
    assert "containerID" not in again


def test_init_container_statuses_are_reported() -> None:
    status = ps.derive_pod_status(view("Never", waiting(), init=(running(),)), [], T1)
    assert status["initContainerStatuses"][0]["state"] == {"running": {"startedAt": "2024-05-01T12:00:00Z"}}
    assert conditions_by_type(status)["Initialized"]["reason"] == "ContainersNotInitialized"


def test_status_patch_only_on_change() -> None:
    desired = ps.derive_pod_status(view("Never", running()), [], T0)
    assert ps.status_patch(None, desired) == {"status": desired}
    same = ps.derive_pod_status(view("Never", running()), desired["conditions"], T1)
    assert ps.status_patch(desired, same) is None
    changed = ps.derive_pod_status(view("Never", exited(0)), desired["conditions"], T1)
    assert ps.status_patch(desired, changed) == {"status": changed}


SPEC = {"name": "c", "image": "img"}


def test_adopt_nothing_known_is_a_fresh_container() -> None:
    assert ps.adopt_record(SPEC, None, T1) == ps.ContainerRecord("c", "img")


def test_adopt_running_container_was_killed_by_the_restart() -> None:
    previous = {"restartCount": 2, "state": {"running": {"startedAt": "2024-05-01T12:00:00Z"}}}
    record = ps.adopt_record(SPEC, previous, T1)
    assert isinstance(record.state, ps.Terminated)
    assert (record.state.exit_code, record.state.started_at, record.restart_count) == (137, T0, 2)
    assert "restarted" in record.state.message


def test_adopt_terminated_and_backing_off_containers_keep_their_exit() -> None:
    done = {"restartCount": 0, "state": {"terminated": {"exitCode": 0, "finishedAt": "2024-05-01T12:00:05Z"}}}
    record = ps.adopt_record(SPEC, done, T1)
    assert isinstance(record.state, ps.Terminated)
    assert (record.state.exit_code, record.state.finished_at) == (0, T1)
    backoff = {
        "restartCount": 3,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 4}},
    }
    record = ps.adopt_record(SPEC, backoff, T1)
    assert isinstance(record.state, ps.Terminated)
    assert (record.state.exit_code, record.restart_count) == (4, 3)


@pytest.mark.parametrize(
    ("policy", "code", "init", "restart"),
    [
        ("Always", 0, False, True),
        ("Always", 1, False, True),
        ("Always", 0, True, False),
        ("Always", 1, True, True),
        ("OnFailure", 0, False, False),
        ("OnFailure", 2, False, True),
        ("Never", 2, False, False),
        ("Never", 2, True, False),
    ],
)
def test_should_restart(policy: str, code: int, init: bool, restart: bool) -> None:
    assert ps.should_restart(policy, code, init) is restart


def test_deletion_grace() -> None:
    pod = {"metadata": {"deletionGracePeriodSeconds": 7}, "spec": {"terminationGracePeriodSeconds": 30}}
    assert ps.deletion_grace(pod) == 7
    assert ps.deletion_grace({"metadata": {}, "spec": {"terminationGracePeriodSeconds": 12}}) == 12
    assert ps.deletion_grace({"metadata": {"deletionGracePeriodSeconds": 0}, "spec": {}}) == ps.MIN_GRACE_SECONDS


def test_rfc3339_is_second_precision_utc() -> None:
    assert ps.rfc3339(T0 + timedelta(microseconds=999_999)) == "2024-05-01T12:00:00Z"


def test_event_shape() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, "spec": {"nodeName": "gpu-0"}}
    event = ps.build_event(pod, "main", True, "BackOff", "Back-off restarting failed container", T0)
    assert event["metadata"] == {"generateName": "p.", "namespace": "ns"}
    assert event["involvedObject"]["fieldPath"] == "spec.containers{main}"
    assert event["involvedObject"]["uid"] == "u"
    assert (event["type"], event["reason"], event["source"]) == (
        "Warning",
        "BackOff",
        {"component": "kubelet", "host": "gpu-0"},
    )
    assert event["firstTimestamp"] == event["lastTimestamp"] == "2024-05-01T12:00:00Z"
