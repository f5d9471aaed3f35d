"""`trainsmart report`'s HTML opened in headless Chromium (Debian's `chromium`, through the DevTools
protocol: `support/chromium.py`).

Pins:
- the recorded sweep's report renders: every plot has drawn its SVG (the parallel coordinates their
  WebGL canvas too), with no console error and no uncaught exception; the screenshot is kept as an
  artifact (build/test-artifacts/console/sweep-report.png, or under $TRAINSMART_TEST_ARTIFACTS);
- the check sees a broken page: a page that logs a console error and throws is reported as such (so the
  first check cannot pass for a page that failed).

Skipped only when chromium is missing and scripts/install-chromium.sh cannot install it (not root);
`make test` installs it first.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from support.chromium import chromium_binary, visit
from trainsmart.console.api import write_report
from trainsmart.console.report_data import sweep_report
from trainsmart.console.report_html import SWEEP_PLOT_IDS

REPO = Path(__file__).parents[3]
PLOTS_DRAWN = (
    "(() => { const ids = %s; return ids.every(id => { const div = document.getElementById(id);"
    " return div && div.querySelector('svg.main-svg') !== null; }) && ids.length; })()"
)


@pytest.fixture(scope="module")
def chromium() -> str:
    if chromium_binary() is None:
        subprocess.run(["bash", str(REPO / "scripts" / "install-chromium.sh")], check=False, timeout=600)
    binary = chromium_binary()
    if binary is None:
        pytest.skip("chromium is not installed and scripts/install-chromium.sh could not install it (needs root)")
    return binary


def artifacts_dir() -> Path:
    base = Path(os.environ.get("TRAINSMART_TEST_ARTIFACTS") or REPO / "build" / "test-artifacts")
    path = base / "console"
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_the_sweep_report_renders_every_plot_without_console_errors(
    chromium: str, recorded: dict[str, Any], tmp_path: Path
) -> None:
    page = write_report(sweep_report(recorded["sweep"], recorded["trials"]), tmp_path / "report.html")
    screenshot = artifacts_dir() / "sweep-report.png"
    screenshot.unlink(missing_ok=True)
    ids = "[" + ",".join(f"'{plot}'" for plot in SWEEP_PLOT_IDS) + "]"
    result = visit(page.as_uri(), PLOTS_DRAWN % ids, screenshot)
    assert result.check == len(SWEEP_PLOT_IDS), f"not every plot was drawn; console: {result.console}"
    assert result.errors == [], result.console
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 50_000


def test_a_broken_page_is_reported(chromium: str, tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>console.error('plot failed'); undefinedFunction();</script></body></html>")
    result = visit(page.as_uri(), "document.readyState === 'complete'", timeout=20)
    assert result.check is True
    assert any("plot failed" in e for e in result.errors)
    assert any("undefinedFunction" in e for e in result.errors)
