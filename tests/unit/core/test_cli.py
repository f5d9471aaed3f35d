"""Pins: the CLI parses without a home directory (an operator container: a uid with no passwd entry and
no HOME), and `dev` commands still default their state dir under $XDG_STATE_HOME."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainsmart.cli import _state_dir, build_parser


def _no_home() -> Path:
    raise RuntimeError("Could not determine home directory.")


def test_the_operator_command_line_parses_without_a_home_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Path, "home", staticmethod(_no_home))
    monkeypatch.delenv("HOME", raising=False)
    args = build_parser().parse_args(["operator", "--trainer-image", "mirror.local/trainer:1"])
    assert args.trainer_image == "mirror.local/trainer:1"


def test_dev_state_dir_defaults_under_xdg_state_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    args = build_parser().parse_args(["dev", "status"])
    assert _state_dir(args) == tmp_path / "trainsmart" / "dev"
    given = build_parser().parse_args(["dev", "status", "--state-dir", str(tmp_path / "x")])
    assert _state_dir(given) == tmp_path / "x"
