"""checkov (the security scanner platform teams run in CI) finds nothing in the chart or the Dockerfiles.

Pins:
- `helm template` of the chart, for each supported value set (cluster and namespaced mode, each webhook
  certificate source, monitors and dashboard on), passes every checkov Kubernetes check except those
  skipped in .checkov.yaml;
- the three Dockerfiles (operator, trainer, and the example user image) pass every checkov Dockerfile check
  except the skipped ones;
- every skipped check in .checkov.yaml says why, and each is still needed (a skip that no longer matches
  any finding is removed rather than left to hide a future one).

checkov runs from its own venv (`make checkov`; scripts/install-checkov.sh says why) and offline
(`skip-download`). Skipped, with the reason, where checkov or helm is not installed; `make test` installs both.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.paths import REPO

CONFIG = REPO / ".checkov.yaml"
CHART = REPO / "charts" / "trainsmart"
DOCKERFILES = (REPO / "Dockerfile", REPO / "trainer_image" / "Dockerfile", REPO / "examples" / "custom" / "Dockerfile")
HELM_VERSION = "v3.18.0"
NAMESPACE = "trainsmart-system"
VALUE_SETS: dict[str, dict[str, str]] = {
    "defaults": {},
    "namespaced": {"watch.mode": "namespaces", "watch.namespaces": "{team-a,team-b}"},
    "cert-manager-2-replicas": {"webhook.certificate.source": "certManager", "replicaCount": "2"},
    "secret": {
        "webhook.certificate.source": "secret",
        "webhook.certificate.secretName": "tls",
        "webhook.certificate.caBundle": "Q0E=",
    },
    "monitors-dashboard": {
        "metrics.serviceMonitor.enabled": "true",
        "metrics.podMonitor.enabled": "true",
        "metrics.dashboard.enabled": "true",
    },
}


def _checkov() -> str:
    """$TRAINSMART_CHECKOV, then the venv `make checkov` fills, then PATH."""
    candidates = [
        os.environ.get("TRAINSMART_CHECKOV"),
        str(Path(sys.prefix) / "tools" / "checkov" / "bin" / "checkov"),
        shutil.which("checkov"),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.skip("checkov is not installed: run `make checkov` (scripts/install-checkov.sh); `make test` does")


def _helm() -> str:
    cached = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / f"trainsmart/helm-{HELM_VERSION}/helm"
    found = os.environ.get("TRAINSMART_HELM") or (str(cached) if os.access(cached, os.X_OK) else shutil.which("helm"))
    if found is None:
        pytest.skip("helm is not installed: run `make helm` (scripts/install-helm.sh); `make test` does")
    return found


def _scan(*args: str, skips: bool = True) -> list[dict[str, Any]]:
    """checkov's failed checks (JSON report) for the given targets, with .checkov.yaml's skips or none."""
    config = ["--config-file", str(CONFIG)] if skips else ["--skip-download"]
    argv = [_checkov(), *config, "--output", "json", "--quiet", *args]
    # Never from the repository root without skips: checkov reads ./.checkov.yaml by itself.
    cwd = REPO if skips else Path(args[-1]).parent
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False, cwd=cwd)
    assert result.returncode in (0, 1), f"checkov exited {result.returncode}:\n{result.stderr[-4000:]}"
    reports = json.loads(result.stdout) if result.stdout.strip() else []
    reports = reports if isinstance(reports, list) else [reports]
    # With nothing failed and --quiet, checkov prints a bare summary instead of a report.
    return [failed for report in reports for failed in report.get("results", {}).get("failed_checks", [])]


def _scan_chart(rendered: Path, *, skips: bool = True) -> list[dict[str, Any]]:
    return _scan("--framework", "kubernetes", "--directory", str(rendered), skips=skips)


def _scan_dockerfiles(*, skips: bool = True) -> list[dict[str, Any]]:
    # One run per kind of target: given --directory and --file together, checkov scans only the directory.
    return _scan(
        "--framework", "dockerfile", *(arg for path in DOCKERFILES for arg in ("--file", str(path))), skips=skips
    )


def _describe(failed: list[dict[str, Any]]) -> str:
    return "\n".join(f"{f['check_id']} {f['check_name']}: {f['resource']} ({f['file_path']})" for f in failed)


@functools.cache
def _skipped_checks() -> dict[str, str]:
    """Each skipped check id with the comment block above it in .checkov.yaml."""
    skips: dict[str, str] = {}
    comment: list[str] = []
    for line in CONFIG.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("# ").strip())
        elif stripped.startswith("- "):
            skips[stripped[2:].strip()] = " ".join(part for part in comment if part and not part.startswith("---"))
            comment = []
        else:
            comment = []
    return skips


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory per value set, each holding that set's `helm template` output."""
    out = tmp_path_factory.mktemp("chart-renders")
    helm = _helm()
    for name, values in VALUE_SETS.items():
        sets = [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]
        argv = [helm, "template", "ts", str(CHART), "--namespace", NAMESPACE, *sets]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, f"{name}: {result.stderr}"
        (out / name).mkdir()
        (out / name / "manifests.yaml").write_text(result.stdout)
    return out


def test_chart_renders_pass_checkov(rendered: Path) -> None:
    failed = _scan_chart(rendered)
    assert failed == [], "checkov findings in the chart (fix them, or skip with a reason in .checkov.yaml):\n" + (
        _describe(failed)
    )


def test_dockerfiles_pass_checkov() -> None:
    failed = _scan_dockerfiles()
    assert failed == [], "checkov findings in the Dockerfiles (fix them, or skip with a reason in .checkov.yaml):\n" + (
        _describe(failed)
    )


def test_every_skipped_check_says_why() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    assert config["skip-download"] is True
    assert sorted(config["skip-check"]) == sorted(_skipped_checks())
    for check, reason in _skipped_checks().items():
        assert len(reason.split()) >= 8, f"{check} needs a reason in .checkov.yaml"


def test_every_skip_is_still_needed(rendered: Path) -> None:
    """Without the skip list, each skipped check fails somewhere: a stale skip would hide a future finding."""
    found = {failed["check_id"] for failed in [*_scan_chart(rendered, skips=False), *_scan_dockerfiles(skips=False)]}
    assert set(_skipped_checks()) <= found, f"stale skips: {sorted(set(_skipped_checks()) - found)}"
