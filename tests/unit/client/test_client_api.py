"""The library's public API as a training script uses it: `import trainsmart_client as ts`.

Pins:
- outside a TrainingJob every call is a no-op that logs once at INFO, and nothing is sent;
- inside a job, SIGTERM sets `stop_requested()` for a script that polls it (which then exits 13 on its own
  terms), and a handler installed before the import still runs (chained); a script that never polled still
  dies on SIGTERM (no hang until SIGKILL); outside a job no handler is installed at all;
- `params()`: the JSON file's exact names and types win, `TRAINSMART_PARAM_*` variables add the rest
  (decoded: numbers, booleans, lists as JSON; strings as text); an unreadable file is skipped;
- `checkpoint_dir()` is the contract's directory (None outside a job); `latest_checkpoint()` is the newest
  entry (files or directories), never a hidden temporary, `.tmp` or the result file, filtered by a pattern.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from support.client_reports import PostRecorder
from trainsmart_client.checkpoints import checkpoint_dir, latest_checkpoint
from trainsmart_client.job_env import read_job_environment
from trainsmart_client.params import read_params
from trainsmart_client.session import Session

EVERY_CALL = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")
import trainsmart_client as ts
for epoch in range(1, 4):
    ts.progress(epoch - 1, total_epochs=3)
    ts.report({"train_loss": 0.5, "val_loss": float("nan")}, epoch=epoch)
ts.report({"val_accuracy": 0.9}, final=True)
print("params", ts.params(), "dir", ts.checkpoint_dir(), "latest", ts.latest_checkpoint(), "stop", ts.stop_requested())
print("finished", ts.finish())
"""


def test_outside_a_job_every_call_is_a_no_op_that_logs_once(clean_env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, "-c", EVERY_CALL], env=clean_env, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert [line for line in lines if line.startswith("INFO")] == [
        "INFO not inside a TrainingJob (no report URL in the environment): reports are not sent"
    ]
    assert "params {} dir None latest None stop False" in lines
    assert "finished True" in lines


def test_outside_a_job_nothing_is_sent(clean_env: dict[str, str], recorder: PostRecorder) -> None:
    session = Session(read_job_environment(clean_env), post=recorder, progress_interval_s=0.0)
    session.progress(1, total_epochs=2)
    session.report({"val_loss": 0.1}, epoch=1)
    session.report_exit(0)
    assert session.finish(1)
    assert recorder.calls == 0


POLLING_SCRIPT = """
import signal, sys, time
marker = sys.argv[1]
def earlier(signum, frame):
    open(marker + ".earlier", "w").close()
signal.signal(signal.SIGTERM, earlier) if "chain" in sys.argv else None
import trainsmart_client as ts
if "poll" in sys.argv:
    ts.stop_requested()
print("ready", flush=True)
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    if "poll" in sys.argv and ts.stop_requested():
        open(marker, "w").write("checkpoint saved")
        sys.exit(13)
    time.sleep(0.02)
sys.exit(0)
"""


def run_until_sigterm(env: dict[str, str], tmp_path: Path, *flags: str) -> int:
    with subprocess.Popen(
        [sys.executable, "-c", POLLING_SCRIPT, str(tmp_path / "marker"), *flags],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as script:
        try:
            assert script.stdout is not None
            assert script.stdout.readline() == b"ready\n"
            script.send_signal(signal.SIGTERM)
            return script.wait(timeout=30)
        finally:
            script.kill()


def test_sigterm_sets_stop_requested_for_a_polling_script(
    clean_env: dict[str, str], job_vars: dict[str, str], tmp_path: Path
) -> None:
    assert run_until_sigterm({**clean_env, **job_vars}, tmp_path, "poll") == 13
    assert (tmp_path / "marker").read_text() == "checkpoint saved"


def test_a_handler_installed_before_the_import_still_runs(
    clean_env: dict[str, str], job_vars: dict[str, str], tmp_path: Path
) -> None:
    assert run_until_sigterm({**clean_env, **job_vars}, tmp_path, "poll", "chain") == 13
    assert (tmp_path / "marker.earlier").exists()
    assert (tmp_path / "marker").exists()


def test_a_script_that_never_polls_still_dies_on_sigterm(
    clean_env: dict[str, str], job_vars: dict[str, str], tmp_path: Path
) -> None:
    assert run_until_sigterm({**clean_env, **job_vars}, tmp_path) == -signal.SIGTERM


def test_outside_a_job_no_handler_is_installed(clean_env: dict[str, str], tmp_path: Path) -> None:
    assert run_until_sigterm(clean_env, tmp_path, "poll") == -signal.SIGTERM
    assert not (tmp_path / "marker").exists()


def test_params_file_wins_and_variables_add_the_rest(tmp_path: Path) -> None:
    params_file = tmp_path / "params.json"
    params_file.write_text(json.dumps({"lr": 0.001, "hiddenSizes": [64, 64], "optimizer": "adam"}))
    env = {
        "TRAINSMART_PARAMS_FILE": str(params_file),
        "TRAINSMART_PARAM_LR": "999",
        "TRAINSMART_PARAM_HIDDENSIZES": "[1]",
        "TRAINSMART_PARAM_BATCH_SIZE": "32",
        "TRAINSMART_PARAM_WARMUP": "true",
        "TRAINSMART_PARAM_SCHEDULE": "cosine",
        "TRAINSMART_PARAM_QUOTED": '"text"',
        "TRAINSMART_PARAM_LAYERS": '{"depth": 3}',
    }
    assert read_params(env) == {
        "lr": 0.001,
        "hiddenSizes": [64, 64],
        "optimizer": "adam",
        "batch_size": 32,
        "warmup": True,
        "schedule": "cosine",
        "quoted": '"text"',
        "layers": {"depth": 3},
    }


def test_an_unreadable_params_file_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broken = tmp_path / "params.json"
    broken.write_text("{not json")
    assert read_params({"TRAINSMART_PARAMS_FILE": str(broken), "TRAINSMART_PARAM_LR": "0.1"}) == {"lr": 0.1}
    assert read_params({"TRAINSMART_PARAMS_FILE": str(tmp_path / "missing.json")}) == {}
    assert "cannot be read" in caplog.text


def test_checkpoint_dir_is_the_contracts_directory(tmp_path: Path) -> None:
    assert checkpoint_dir({"TRAINSMART_CHECKPOINT_DIR": str(tmp_path)}) == tmp_path
    assert checkpoint_dir({}) is None


def test_latest_checkpoint_is_the_newest_real_entry(tmp_path: Path) -> None:
    def touch(name: str, mtime: int, directory: bool = False) -> None:
        path = tmp_path / name
        path.mkdir() if directory else path.write_bytes(b"x")
        os.utime(path, (mtime, mtime))

    touch("epoch-2.pt", 1000)
    touch("epoch-10.pt", 1000)  # same time: the higher number is newer
    touch("checkpoint-500", 900, directory=True)
    touch(".epoch-11.pt.partial", 2000)
    touch("epoch-12.pt.tmp", 2000)
    touch("result.json", 3000)
    assert latest_checkpoint(directory=tmp_path) == tmp_path / "epoch-10.pt"
    assert latest_checkpoint("checkpoint-*", directory=tmp_path) == tmp_path / "checkpoint-500"
    assert latest_checkpoint("*.ckpt", directory=tmp_path) is None
    assert latest_checkpoint(directory=tmp_path / "missing") is None
