"""The node agent's termination-message helpers (the pod worker's use of them is in test_agent_pods.py).

Pins:
- a container without the fields gets the API server's defaults (/dev/termination-log, File);
- the message file sits beside the container's log and every preparation empties it, owned by the
  container's user;
- binding: a launch gets this run's file at the container's path; a relative or root path, or a file
  that cannot be made, leaves the launch without one;
- the file's first 4096 bytes are the message; the log tail stands in (80 lines, 2048 bytes at most) only
  under FallbackToLogsOnError, for an empty file and a non-zero exit; an unreadable file is no message.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trainsmart.devcluster.agent import termination_messages as t
from trainsmart.devcluster.agent.pod_runtime_contract import ContainerLaunch, Mount


def test_defaults_are_the_api_servers() -> None:
    assert t.message_spec({"name": "c"}) == t.MessageSpec("/dev/termination-log", "File")
    custom = {"terminationMessagePath": "/tmp/msg", "terminationMessagePolicy": "FallbackToLogsOnError"}
    assert t.message_spec(custom) == t.MessageSpec("/tmp/msg", "FallbackToLogsOnError")


def test_message_file_sits_beside_the_log() -> None:
    assert t.message_file(Path("/s/logs/ns_p_u/trainer.log")) == Path("/s/logs/ns_p_u/trainer.termination-log")


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_prepare_empties_the_file_and_gives_it_to_the_user(tmp_path: Path) -> None:
    path = tmp_path / "c.termination-log"
    path.write_text("previous run")
    assert t.prepare_message_file(path, 1234, 4321)
    info = path.stat()
    assert (info.st_size, info.st_uid, info.st_gid) == (0, 1234, 4321)


def test_prepare_reports_failure_instead_of_raising(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert not t.prepare_message_file(blocker / "sub" / "c.termination-log", None, None)


def _launch(log_path: Path) -> ContainerLaunch:
    return ContainerLaunch("uid", "ns", "p", "c", ["true"], {}, log_path)


def test_bind_mounts_a_fresh_file_at_the_container_path(tmp_path: Path) -> None:
    log_path = tmp_path / "logs" / "c.log"
    t.message_file(log_path).parent.mkdir(parents=True)
    t.message_file(log_path).write_text("previous run")
    launch, host = t.bind_message_file({"terminationMessagePath": "/tmp/msg"}, _launch(log_path))
    assert host == t.message_file(log_path)
    assert host.read_text() == ""
    assert launch.termination_message == Mount(host_path=host, container_path="/tmp/msg")


@pytest.mark.parametrize("path", ["relative/msg", "/", "//"])
def test_bind_skips_unusable_paths(tmp_path: Path, path: str) -> None:
    original = _launch(tmp_path / "c.log")
    assert t.bind_message_file({"terminationMessagePath": path}, original) == (original, None)
    assert not t.message_file(tmp_path / "c.log").exists()


def test_bind_runs_without_a_file_that_cannot_be_made(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    original = _launch(blocker / "sub" / "c.log")
    assert t.bind_message_file({}, original) == (original, None)


FALLBACK = t.MessageSpec(policy=t.POLICY_FALLBACK)


@pytest.mark.parametrize(
    ("content", "spec", "exit_code", "expected"),
    [
        ("done", t.MessageSpec(), 0, "done"),
        ("x" * 5000, t.MessageSpec(), 0, "x" * 4096),
        ("", t.MessageSpec(), 1, ""),
        ("", FALLBACK, 1, "log line 99"),
        ("  \n", FALLBACK, 1, "log line 99"),
        ("", FALLBACK, 0, ""),
        ("reason", FALLBACK, 1, "reason"),
        (None, FALLBACK, 2, "log line 99"),
        (None, t.MessageSpec(), 2, ""),
    ],
)
def test_read_message(tmp_path: Path, content: str | None, spec: t.MessageSpec, exit_code: int, expected: str) -> None:
    log_path = tmp_path / "c.log"
    log_path.write_text("".join(f"log line {i}\n" for i in range(100)))
    path = tmp_path / "c.termination-log"
    if content is not None:
        path.write_text(content)
    message = t.read_message(path, spec, exit_code, log_path)
    assert message.endswith(expected)
    if expected.startswith("log"):
        assert message.startswith("log line 20\n") and len(message.splitlines()) == 80


def test_log_tail_is_bounded_in_bytes(tmp_path: Path) -> None:
    log_path = tmp_path / "c.log"
    log_path.write_text("y" * 10_000 + "\n")
    assert t.log_tail(log_path) == "y" * 2048
    assert t.log_tail(tmp_path / "missing.log") == ""


def test_unreadable_message_file_is_no_message(tmp_path: Path) -> None:
    assert t.read_message(tmp_path / "missing", t.MessageSpec(), 0, None) == ""
    assert t.read_message(None, FALLBACK, 1, None) == ""
