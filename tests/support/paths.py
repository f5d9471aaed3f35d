"""Where the repository's files are, for tests at any depth below tests/."""

from __future__ import annotations

from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parents[2]
"""The repository root (crds/, charts/, examples/ ...)."""
