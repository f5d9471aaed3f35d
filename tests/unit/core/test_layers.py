"""The layer contracts (`[tool.importlinter]` in pyproject.toml, run by `make lint`) hold, and they bite.

Pins:
- the code as it is keeps every contract;
- a copy of the code with one deliberately wrong import breaks the contract that forbids it, and the
  report names the import: a pure status module importing a handler, a builder importing Kopf, an API
  model importing the local cluster, the trainer importing the operator, the trainer speaking HTTP itself
  instead of through the client's sender;
- no two modules of `trainsmart` share a name (one obvious place for each thing).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from support.paths import REPO as ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed (make venv)")


def lint_imports(pyproject: Path, *paths: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(Path(sys.executable).parent), "PYTHONPATH": ":".join(str(p) for p in paths)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(pyproject)],
        cwd=pyproject.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_code_keeps_every_layer_contract() -> None:
    done = lint_imports(ROOT / "pyproject.toml", ROOT / "operator", ROOT / "trainer_image")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "broken" not in done.stdout.lower().replace("0 broken", "")


@pytest.mark.parametrize(
    ("module", "wrong_import", "contract"),
    [
        ("trainsmart/status/plan.py", "import trainsmart.handlers.controller_core", "operator layers"),
        ("trainsmart/builders/pods.py", "import kopf", "nothing below the handlers imports Kopf"),
        ("trainsmart/api/common.py", "import trainsmart.devcluster.controlplane", "local-cluster tooling"),
        ("trainsmart_trainer/loop.py", "import trainsmart.names", "the packaged trainer stands alone"),
        ("trainsmart_trainer/report.py", "import urllib", "speaks no HTTP of its own"),
    ],
    ids=[
        "pure imports handler",
        "builder imports kopf",
        "api imports devcluster",
        "trainer imports operator",
        "trainer sends reports itself",
    ],
)
def test_a_deliberately_wrong_import_breaks_its_contract(
    tmp_path: Path, module: str, wrong_import: str, contract: str
) -> None:
    operator, trainer = tmp_path / "operator", tmp_path / "trainer_image"
    shutil.copytree(ROOT / "operator" / "trainsmart", operator / "trainsmart")
    shutil.copytree(ROOT / "trainer_image" / "trainsmart_trainer", trainer / "trainsmart_trainer")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = (operator if module.startswith("trainsmart/") else trainer) / module
    target.write_text(f"{wrong_import}  # planted by the test\n" + target.read_text())
    done = lint_imports(tmp_path / "pyproject.toml", operator, trainer)
    assert done.returncode != 0, done.stdout
    report = done.stdout.split("Broken contracts", 1)[-1]
    assert contract in report and wrong_import.split()[-1] in report, done.stdout


def test_no_two_operator_modules_share_a_name() -> None:
    names = Counter(
        path.name
        for path in (ROOT / "operator" / "trainsmart").rglob("*.py")
        if path.name not in {"__init__.py", "__main__.py"}
    )
    assert [name for name, count in names.items() if count > 1] == []
