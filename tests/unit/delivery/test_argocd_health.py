"""The Argo CD health checks (charts/trainsmart/argocd/*.lua), run by two real Lua 5.1s on real statuses.

Argo CD evaluates health scripts in gopher-lua, a Go implementation of Lua 5.1, with the object decoded
from JSON. Every check here runs twice: with Debian's `lua5.1` (the reference interpreter) and with
gopher-lua (Debian's golang-github-yuin-gopher-lua-dev, driven by argocd_gopherlua/main.go, which hands
the script the object the way Argo CD does). The statuses are tests/fixtures/argocd/statuses.yaml,
captured from real runs on the local cluster (its header and tests/e2e/test_argocd_statuses.py say how,
and that test keeps them in line with real runs).

Pins:
- every captured status parses with the pydantic status model of its kind;
- TrainingJob: Succeeded -> Healthy; Failed and InvalidSpec -> Degraded; Suspended -> Suspended; Pending,
  Running and Restarting -> Progressing; HyperparamSweep likewise (Running and Pending -> Progressing);
  the message is the operator's own condition message for that state (plus the epoch while training);
- constructed edge cases: no status yet and a status of an older generation -> Progressing with a
  message saying so; a TrainingWarning shows in a running job's message; numbers given as floats (as
  Argo CD converts JSON) read the same;
- docs/argocd.md carries both scripts verbatim, in the argocd-cm keys Argo CD reads.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.paths import REPO
from trainsmart.api.sweep_status import HyperparamSweepStatus
from trainsmart.api.trainingjob_status import TrainingJobStatus

SCRIPTS = {
    "TrainingJob": REPO / "charts" / "trainsmart" / "argocd" / "trainingjob-health.lua",
    "HyperparamSweep": REPO / "charts" / "trainsmart" / "argocd" / "hyperparamsweep-health.lua",
}
FIXTURES = REPO / "tests" / "fixtures" / "argocd" / "statuses.yaml"
DOCS = REPO / "docs" / "argocd.md"
LUA = shutil.which("lua5.1")
GOPHER_LUA_SOURCE = Path("/usr/share/gocode/src/github.com/yuin/gopher-lua")
GOPHER_LUA_RUNNER = Path(__file__).with_name("argocd_gopherlua") / "main.go"
Health = Callable[[dict[str, Any]], tuple[str, str]]

# case -> (health, the condition whose message is shown)
EXPECTED = {
    "trainingjob-pending": ("Progressing", "Running"),
    "trainingjob-running": ("Progressing", "Running"),
    "trainingjob-restarting": ("Progressing", "Restarting"),
    "trainingjob-succeeded": ("Healthy", "Succeeded"),
    "trainingjob-failed": ("Degraded", "Failed"),
    "trainingjob-suspended": ("Suspended", "Suspended"),
    "trainingjob-invalid-spec": ("Degraded", "InvalidSpec"),
    "sweep-running": ("Progressing", "Running"),
    "sweep-succeeded": ("Healthy", "Succeeded"),
    "sweep-failed": ("Degraded", "Failed"),
    "sweep-suspended": ("Suspended", "Suspended"),
    "sweep-invalid-spec": ("Degraded", "InvalidSpec"),
}


def lua_literal(value: Any) -> str:
    """A Lua 5.1 constructor for a JSON value (how Argo CD hands the object to the script: a table)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + "".join(ch if ch.isalnum() or ch in " .,:;_-/()=%+<>[]'" else f"\\{ord(ch)}" for ch in value) + '"'
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(item) for item in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{lua_literal(str(k))}] = {lua_literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def lua51_health(obj: dict[str, Any]) -> tuple[str, str]:
    """(status, message) the kind's health script returns for `obj`, run by lua5.1."""
    assert LUA is not None
    program = (
        f"obj = {lua_literal(obj)}\n"
        f"local hs = assert(loadfile({lua_literal(str(SCRIPTS[obj['kind']]))}))()\n"
        'io.write(hs.status, "\\n", hs.message or "")\n'
    )
    result = subprocess.run([LUA, "-"], input=program, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    status, _, message = result.stdout.partition("\n")
    return status, message


@pytest.fixture(scope="session")
def gopher_lua(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """argocd_gopherlua/main.go built against Debian's gopher-lua source (GOPATH mode, no downloads)."""
    go = shutil.which("go")
    if go is None or not GOPHER_LUA_SOURCE.is_dir():
        pytest.skip("go or gopher-lua is not installed (scripts/install-image-tools.sh installs both)")
    binary = tmp_path_factory.mktemp("gopher-lua") / "health"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "trainsmart" / "go-build-argocd"
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": "/usr/share/gocode", "GOCACHE": str(cache)}
    argv = [go, "build", "-o", str(binary), str(GOPHER_LUA_RUNNER)]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    return binary


@pytest.fixture(params=["lua5.1", "gopher-lua"])
def health(request: pytest.FixtureRequest) -> Health:
    """(status, message) the kind's health script returns for an object, per Lua implementation."""
    if request.param == "lua5.1":
        if LUA is None:
            pytest.skip("lua5.1 is not installed (scripts/install-image-tools.sh installs it)")
        return lua51_health
    binary: Path = request.getfixturevalue("gopher_lua")

    def run(obj: dict[str, Any]) -> tuple[str, str]:
        argv = [str(binary), str(SCRIPTS[obj["kind"]])]
        result = subprocess.run(argv, input=json.dumps(obj), capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 0, result.stderr
        status, _, message = result.stdout.partition("\n")
        return status, message

    return run


def captured() -> dict[str, dict[str, Any]]:
    loaded: dict[str, dict[str, Any]] = yaml.safe_load(FIXTURES.read_text())
    return loaded


def condition_message(obj: dict[str, Any], type_: str) -> str:
    return str(next(c["message"] for c in obj["status"]["conditions"] if c["type"] == type_))


def test_the_fixtures_are_real_statuses_of_every_case() -> None:
    assert FIXTURES.read_text().startswith("# Statuses captured from real runs")
    cases = captured()
    assert sorted(cases) == sorted(EXPECTED)
    for obj in cases.values():
        model = TrainingJobStatus if obj["kind"] == "TrainingJob" else HyperparamSweepStatus
        model.model_validate(obj["status"])


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_health_of_a_captured_status(case: str, health: Health) -> None:
    obj = captured()[case]
    want_status, source = EXPECTED[case]
    status, message = health(obj)
    assert status == want_status
    expected = condition_message(obj, source)
    if source == "InvalidSpec":
        expected = f"Invalid spec: {expected}"
    elif obj["status"]["phase"] == "Pending":
        expected = f"Pending: {expected}"
    elif case == "trainingjob-running":
        progress, headline = obj["status"]["progress"], (obj["status"].get("metrics") or {}).get("headline")
        expected += f"; epoch {progress['epoch']}/{progress['totalEpochs']}" + (f", {headline}" if headline else "")
    assert message == expected


@pytest.mark.parametrize("kind", sorted(SCRIPTS))
def test_no_status_yet_is_progressing(kind: str, health: Health) -> None:
    obj = {"apiVersion": "trainsmart.dev/v1alpha1", "kind": kind, "metadata": {"name": "x", "generation": 1}}
    status, message = health(obj)
    assert status == "Progressing" and "Waiting for the trainsmart operator" in message


@pytest.mark.parametrize("case", ["trainingjob-succeeded", "sweep-succeeded"])
def test_a_status_of_an_older_generation_is_progressing(case: str, health: Health) -> None:
    obj = copy.deepcopy(captured()[case])
    obj["metadata"]["generation"] = obj["status"]["observedGeneration"] + 1
    assert health(obj) == (
        "Progressing",
        f"Waiting for the operator to observe generation {obj['metadata']['generation']}",
    )


def test_a_training_warning_shows_while_running(health: Health) -> None:
    obj = copy.deepcopy(captured()["trainingjob-running"])
    warning = next(c for c in obj["status"]["conditions"] if c["type"] == "TrainingWarning")
    warning.update(status="True", reason="Overfitting", message="val_loss rose for 3 epochs")
    status, message = health(obj)
    assert status == "Progressing" and message.endswith("; warning: val_loss rose for 3 epochs")


def test_the_docs_carry_both_scripts_verbatim_as_argocd_cm_keys() -> None:
    text = DOCS.read_text()
    blocks = [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)]
    configmaps = [block for block in blocks if isinstance(block, dict) and block.get("kind") == "ConfigMap"]
    (argocd_cm,) = [block for block in configmaps if block["metadata"]["name"] == "argocd-cm"]
    helm_values = [block for block in blocks if isinstance(block, dict) and "configs" in block]
    (values,) = helm_values
    for kind, script in SCRIPTS.items():
        key = f"resource.customizations.health.trainsmart.dev_{kind}"
        assert argocd_cm["data"][key] == script.read_text(), key
        assert values["configs"]["cm"][key] == script.read_text(), key


def test_numbers_as_floats_read_the_same(health: Health) -> None:
    """Argo CD hands JSON numbers to Lua as floats: an epoch of 1.0 still reads `epoch 1/3`."""
    obj = copy.deepcopy(captured()["trainingjob-running"])
    progress = obj["status"]["progress"]
    as_ints = health(obj)
    progress.update(epoch=float(progress["epoch"]), totalEpochs=float(progress["totalEpochs"]))
    assert health(obj) == as_ints
