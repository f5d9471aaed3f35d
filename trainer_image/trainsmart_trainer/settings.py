"""Turning the command line and the environment into a validated TrainerConfig and RuntimeSettings.

Pure functions of their inputs (a Mapping for the environment, file contents read in one place), so the
precedence rules are unit-tested without touching os.environ. Importing this module does not import torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from trainsmart_trainer import contract
from trainsmart_trainer.config import TrainerConfig


class ConfigError(Exception):
    """The configuration cannot be used; `lines` are the problems, each starting with the field path."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def format_errors(error: ValidationError, prefix: str = "config") -> list[str]:
    """One line per problem with its camelCase path (`config.optimizer.momentum: ...`), as a user types it."""
    lines = []
    for item in error.errors(include_url=False):
        path = prefix
        for part in item["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            elif "[" not in part:  # pydantic's validator-name noise inside union locations
                path += f".{part}"
        message = str(item["msg"]).removeprefix("Value error, ")
        lines.append(f"{path}: {message}")
    return lines


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`override` over `base`: nested objects merge key by key, anything else (lists too) is replaced."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = merge(current, value)
        else:
            merged[key] = value
    return merged


def extract_trainer_config(document: Any, source: str) -> dict[str, Any]:
    """The TrainerConfig part of a parsed file: the document itself, or `spec.trainer.config` of a TrainingJob.

    Accepting the manifest lets `trainsmart-train --config job.yaml` run locally exactly what `kubectl apply
    -f job.yaml` would run in the cluster.
    """
    if document is None:
        return {}
    if not isinstance(document, Mapping):
        raise ConfigError(
            [f"{source}: expected a mapping (a TrainerConfig or a TrainingJob), got {type(document).__name__}"]
        )
    if "kind" in document or "apiVersion" in document:
        if document.get("kind") != "TrainingJob":
            raise ConfigError([f"{source}: kind {document.get('kind')!r} is not a TrainingJob; pass a TrainingJob"])
        config = ((document.get("spec") or {}).get("trainer") or {}).get("config") or {}
        if not isinstance(config, Mapping):
            raise ConfigError([f"{source}: spec.trainer.config must be a mapping"])
        return dict(config)
    return dict(document)


def parse_config_text(text: str, source: str) -> dict[str, Any]:
    """YAML (a superset of JSON) with one or more documents; the first TrainingJob or the only document wins."""
    try:
        documents = [document for document in yaml.safe_load_all(text) if document is not None]
    except yaml.YAMLError as error:
        raise ConfigError([f"{source}: not valid YAML or JSON: {error}"]) from error
    if len(documents) > 1:
        jobs = [
            document
            for document in documents
            if isinstance(document, Mapping) and document.get("kind") == "TrainingJob"
        ]
        if not jobs:
            raise ConfigError([f"{source}: {len(documents)} documents and none is a TrainingJob"])
        documents = jobs[:1]
    return extract_trainer_config(documents[0] if documents else None, source)


def read_config_file(path: str) -> dict[str, Any]:
    """Parse a config file; unreadable files are config errors (permanent), not crashes."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError([f"{path}: cannot read the config file: {error.strerror or error}"]) from error
    return parse_config_text(text, path)


def load_config(cli_path: str | None, env: Mapping[str, str]) -> tuple[TrainerConfig, list[str]]:
    """The effective TrainerConfig and the sources it came from, in the order they were applied.

    Order: the file (`--config`, else TRAINSMART_CONFIG_PATH), then TRAINSMART_CONFIG's inline JSON merged
    over it. Neither: the packaged defaults (digits + mlp). Raises ConfigError with every problem found.
    """
    raw: dict[str, Any] = {}
    sources: list[str] = []
    path = cli_path or env.get(contract.CONFIG_PATH) or None
    if path:
        raw = read_config_file(path)
        sources.append(path)
    inline = env.get(contract.CONFIG_JSON, "").strip()
    if inline:
        try:
            overrides = json.loads(inline)
        except json.JSONDecodeError as error:
            raise ConfigError([f"{contract.CONFIG_JSON}: not valid JSON: {error}"]) from error
        if not isinstance(overrides, Mapping):
            raise ConfigError([f"{contract.CONFIG_JSON}: expected a JSON object"])
        raw = merge(raw, overrides)
        sources.append(contract.CONFIG_JSON)
    try:
        return TrainerConfig.model_validate(raw), sources or ["defaults"]
    except ValidationError as error:
        raise ConfigError(format_errors(error)) from error


@dataclass(frozen=True)
class RuntimeSettings:
    """Everything about where and how to run that is not a hyperparameter: paths, endpoints, identity. (The
    device is resolved earlier, from the environment alone, so that the first log line can announce it.)"""

    checkpoint_dir: Path | None = None
    checkpoint_interval_epochs: int = 1
    checkpoint_keep: int = contract.DEFAULT_CHECKPOINT_KEEP
    report_url: str | None = None
    report_token: str | None = None
    report_ca_file: str | None = None
    metrics_port: int | None = None
    result_path: Path | None = None
    termination_log: Path | None = None
    job_name: str = ""
    job_namespace: str = ""
    attempt: int | None = None
    objective_metric: str = ""
    """A sweep trial's objective (OBJECTIVE_METRIC): what the best checkpoint follows; "" for the run's own."""
    objective_goal: contract.ObjectiveDirection | None = None


def _objective_goal(env: Mapping[str, str]) -> contract.ObjectiveDirection | None:
    raw = env.get(contract.OBJECTIVE_GOAL, "").strip()
    if not raw:
        return None
    try:
        return contract.ObjectiveDirection.of(raw)
    except ValueError:
        raise ConfigError([f"{contract.OBJECTIVE_GOAL}: expected maximize or minimize, got {raw!r}"]) from None


def _int_env(env: Mapping[str, str], name: str, default: int | None, minimum: int) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError([f"{name}: expected an integer, got {raw!r}"]) from None
    if value < minimum:
        raise ConfigError([f"{name}: must be >= {minimum}, got {value}"])
    return value


def default_termination_log() -> Path | None:
    """The kubelet's file when it exists and is writable. Never created: on a laptop /dev is not ours."""
    path = Path(contract.DEFAULT_TERMINATION_LOG)
    return path if path.is_file() and os.access(path, os.W_OK) else None


def runtime_settings(
    env: Mapping[str, str],
    *,
    config: TrainerConfig,
    checkpoint_dir: str | None = None,
    result_path: str | None = None,
    metrics_port: int | None = None,
    termination_log: str | None = None,
) -> RuntimeSettings:
    """Settings from the environment, with command-line values (the keyword arguments) taking precedence."""
    checkpoints = checkpoint_dir or env.get(contract.CHECKPOINT_DIR) or None
    interval = config.checkpoint_every_epochs or _int_env(env, contract.CHECKPOINT_INTERVAL_EPOCHS, 1, 1) or 1
    keep = _int_env(env, contract.CHECKPOINT_KEEP, contract.DEFAULT_CHECKPOINT_KEEP, 1)
    port = metrics_port if metrics_port is not None else _int_env(env, contract.METRICS_PORT, None, 0)
    if port is not None and port > 65535:
        raise ConfigError([f"{contract.METRICS_PORT}: {port} is not a TCP port"])
    result = result_path or env.get(contract.RESULT_PATH) or None
    if result is None and checkpoints:
        result = str(Path(checkpoints) / contract.RESULT_FILE_NAME)
    termination = termination_log or env.get(contract.TERMINATION_LOG) or None
    report_url = env.get(contract.REPORT_URL) or None
    if report_url is not None and not report_url.startswith(("http://", "https://")):
        raise ConfigError([f"{contract.REPORT_URL}: {report_url!r} is not an http(s) URL"])
    return RuntimeSettings(
        checkpoint_dir=Path(checkpoints) if checkpoints else None,
        checkpoint_interval_epochs=interval,
        checkpoint_keep=keep or contract.DEFAULT_CHECKPOINT_KEEP,
        report_url=report_url,
        report_token=env.get(contract.REPORT_TOKEN) or None,
        report_ca_file=env.get(contract.REPORT_CA_FILE) or None,
        metrics_port=port,
        result_path=Path(result) if result else None,
        termination_log=Path(termination) if termination else default_termination_log(),
        job_name=env.get(contract.JOB_NAME, ""),
        job_namespace=env.get(contract.JOB_NAMESPACE, ""),
        attempt=_int_env(env, contract.ATTEMPT, None, 0),
        objective_metric=env.get(contract.OBJECTIVE_METRIC, "").strip(),
        objective_goal=_objective_goal(env),
    )
