"""`bundle.build_zipapp()`: the client as one file for images that only have a `python3`.

Pins:
- the archive is small (well under the 1 MiB a ConfigMap can hold), deterministic (same bytes on every
  build, so the operator's ConfigMap does not churn), and holds every module of the package;
- `python3 bundle.pyz wrap ... -- cmd` runs the wrapper from the zip (exit code, output, metric parsing)
  in an interpreter that cannot see the installed package;
- with the .pyz on PYTHONPATH a fresh interpreter imports `trainsmart_client` from the zip and its API works
  (a no-op outside a job).
"""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import trainsmart_client
from trainsmart_client.bundle import BUNDLE_FILE_NAME, build_zipapp


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    path = tmp_path / BUNDLE_FILE_NAME
    path.write_bytes(build_zipapp())
    return path


def isolated(clean_env: dict[str, str], **extra: str) -> dict[str, str]:
    """No PYTHONPATH of the runner's; with `-S` the venv's site-packages (the installed client) is unseen."""
    return {**{key: value for key, value in clean_env.items() if key != "PYTHONPATH"}, **extra}


def test_the_archive_is_small_deterministic_and_complete() -> None:
    data = build_zipapp()
    assert len(data) < 256 * 1024
    assert build_zipapp() == data
    names = set(zipfile.ZipFile(io.BytesIO(data)).namelist())
    package = Path(trainsmart_client.__file__).parent
    assert {f"trainsmart_client/{path.name}" for path in package.glob("*.py")} <= names
    assert "__main__.py" in names
    # Subpackages too (the framework callbacks), so an image without the package can import them.
    assert "trainsmart_client/callbacks/huggingface.py" in names
    assert "trainsmart_client/callbacks/lightning.py" in names
    assert not any("__pycache__" in name for name in names)


def test_the_zipapp_runs_wrap(bundle: Path, clean_env: dict[str, str]) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-S",
            str(bundle),
            "wrap",
            "--format",
            "kv",
            "--",
            sys.executable,
            "-c",
            "print('epoch=1 loss=0.5'); raise SystemExit(3)",
        ],
        env=isolated(clean_env),
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert result.stdout == b"epoch=1 loss=0.5\n"


def test_the_zipapp_on_pythonpath_is_importable_in_a_fresh_interpreter(
    bundle: Path, clean_env: dict[str, str], tmp_path: Path
) -> None:
    script = (
        "import trainsmart_client as ts\n"
        "print(ts.__file__)\n"
        "ts.report({'loss': 0.5}, epoch=1)\n"
        "print(ts.params(), ts.checkpoint_dir(), ts.stop_requested(), ts.finish())\n"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", script],
        env=isolated(clean_env, PYTHONPATH=str(bundle)),
        capture_output=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[0].startswith(str(bundle))
    assert lines[1] == "{} None False True"
