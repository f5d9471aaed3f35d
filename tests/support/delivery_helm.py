"""`helm template` of the chart for the delivery tests, and the operator options its Deployment starts with.

The command line is parsed by the operator's own parser (`trainsmart operator ...`), so a flag the chart
writes that the operator does not know, or a value it refuses, fails the test that renders it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.paths import REPO
from trainsmart.cli import build_parser
from trainsmart.operator_config import operator_options
from trainsmart.options import OperatorOptions

CHART = REPO / "charts" / "trainsmart"
HELM = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "trainsmart/helm-v3.18.0/helm"


def helm_template(values: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`helm template` with `values`; skips the test when no helm is installed (`make helm` installs it)."""
    binary = os.environ.get("TRAINSMART_HELM") or (str(HELM) if os.access(HELM, os.X_OK) else shutil.which("helm"))
    if binary is None:
        pytest.skip("helm is not installed: run `make helm` (scripts/install-helm.sh); `make test` does")
    given = tmp_path / "values.yaml"
    given.write_text(yaml.safe_dump(values))
    command = [binary, "template", "ts", str(CHART), "--namespace", "trainsmart-system", "-f", str(given)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def render(values: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
    result = helm_template(values, tmp_path)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def operator_options_of(objects: list[dict[str, Any]]) -> OperatorOptions:
    """The options of the operator container's arguments in the rendered Deployment."""
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return operator_options(build_parser().parse_args(["operator", *args]))
