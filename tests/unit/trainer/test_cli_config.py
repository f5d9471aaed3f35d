"""Config and runtime settings from files, inline JSON and the environment.

Pins:
- a file may be a bare TrainerConfig (YAML or JSON) or a TrainingJob manifest (its spec.trainer.config);
- TRAINSMART_CONFIG's JSON is merged over the file (objects merged key by key), --config beats the env path;
- invalid config lists every problem with its camelCase path;
- runtime settings: CLI beats env; result file defaults into the checkpoint dir; termination log defaults
  to /dev/termination-log only when it exists and is writable; bad integers are config errors.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainsmart_trainer import contract
from trainsmart_trainer.config import ModelName, OptimizerName, TrainerConfig
from trainsmart_trainer.settings import ConfigError, load_config, merge, parse_config_text, runtime_settings

MANIFEST = """
apiVersion: trainsmart.dev/v1alpha1
kind: TrainingJob
metadata: {name: demo}
spec:
  replicas: 2
  trainer:
    config:
      epochs: 3
      model: {name: cnn}
      optimizer: {name: sgd, momentum: 0.8}
"""


def test_a_training_job_manifest_yields_its_trainer_config() -> None:
    raw = parse_config_text(MANIFEST, "job.yaml")
    config = TrainerConfig.model_validate(raw)
    assert (config.epochs, config.model.name, config.optimizer.momentum) == (3, ModelName.CNN, 0.8)


def test_multi_document_files_pick_the_training_job() -> None:
    text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\n" + MANIFEST
    assert parse_config_text(text, "all.yaml")["epochs"] == 3


def test_other_kinds_are_refused() -> None:
    with pytest.raises(ConfigError, match="is not a TrainingJob"):
        parse_config_text("kind: Deployment\napiVersion: apps/v1\n", "x.yaml")


def test_inline_json_is_merged_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"epochs": 2, "optimizer": {"name": "sgd", "momentum": 0.5}}))
    env = {contract.CONFIG_JSON: json.dumps({"optimizer": {"momentum": 0.7}, "learningRate": 0.05})}
    config, sources = load_config(str(path), env)
    assert (config.epochs, config.optimizer.name, config.optimizer.momentum) == (2, OptimizerName.SGD, 0.7)
    assert config.learning_rate == 0.05
    assert sources == [str(path), contract.CONFIG_JSON]


def test_cli_path_beats_the_env_path(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("epochs: 4\n")
    (tmp_path / "b.yaml").write_text("epochs: 5\n")
    config, _ = load_config(str(tmp_path / "a.yaml"), {contract.CONFIG_PATH: str(tmp_path / "b.yaml")})
    assert config.epochs == 4
    config, _ = load_config(None, {contract.CONFIG_PATH: str(tmp_path / "b.yaml")})
    assert config.epochs == 5


def test_no_config_at_all_means_the_packaged_defaults() -> None:
    config, sources = load_config(None, {})
    assert config == TrainerConfig() and sources == ["defaults"]


def test_invalid_config_lists_every_problem_with_its_path() -> None:
    env = {contract.CONFIG_JSON: json.dumps({"epochs": 0, "optimizer": {"name": "adam", "momentum": 0.9}, "lr": 1})}
    with pytest.raises(ConfigError) as info:
        load_config(None, env)
    text = "\n".join(info.value.lines)
    assert "config.epochs:" in text
    assert "config.optimizer: momentum does not apply to adam" in text
    assert "config.lr: Extra inputs are not permitted" in text


def test_unreadable_or_malformed_sources_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "missing.yaml"), {})
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(None, {contract.CONFIG_JSON: "{nope"})
    (tmp_path / "bad.yaml").write_text("epochs: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(tmp_path / "bad.yaml"), {})


def test_merge_replaces_lists_and_merges_objects() -> None:
    assert merge({"a": {"b": 1, "c": [1, 2]}}, {"a": {"c": [3]}}) == {"a": {"b": 1, "c": [3]}}


def test_runtime_settings_from_env_and_cli(tmp_path: Path) -> None:
    env = {
        contract.CHECKPOINT_DIR: str(tmp_path / "ckpt"),
        contract.METRICS_PORT: "9400",
        contract.REPORT_URL: "http://op:8080/reports",
        contract.REPORT_TOKEN: "t0k",
        contract.JOB_NAME: "demo",
        contract.JOB_NAMESPACE: "team",
        contract.SIMULATED_GPUS: "1",
        contract.CHECKPOINT_INTERVAL_EPOCHS: "2",
        contract.TERMINATION_LOG: str(tmp_path / "term"),
    }
    settings = runtime_settings(env, config=TrainerConfig())
    assert settings.result_path == tmp_path / "ckpt" / contract.RESULT_FILE_NAME
    assert (settings.metrics_port, settings.report_token, settings.job_name) == (9400, "t0k", "demo")
    assert settings.checkpoint_interval_epochs == 2 and settings.job_namespace == "team"
    assert settings.termination_log == tmp_path / "term"
    cli = runtime_settings(env, config=TrainerConfig(checkpoint_every_epochs=5), metrics_port=0, result_path="/r.json")
    assert (cli.metrics_port, cli.result_path, cli.checkpoint_interval_epochs) == (0, Path("/r.json"), 5)


def test_without_a_kubelet_file_there_is_no_termination_log() -> None:
    settings = runtime_settings({}, config=TrainerConfig())
    expected = Path(contract.DEFAULT_TERMINATION_LOG)
    assert settings.termination_log in (None, expected)
    if not expected.exists():
        assert settings.termination_log is None
    assert settings.result_path is None and settings.checkpoint_dir is None and settings.metrics_port is None


def test_bad_values_in_env_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=contract.METRICS_PORT):
        runtime_settings({contract.METRICS_PORT: "http"}, config=TrainerConfig())
    with pytest.raises(ConfigError, match=contract.CHECKPOINT_KEEP):
        runtime_settings({contract.CHECKPOINT_KEEP: "0"}, config=TrainerConfig())
    with pytest.raises(ConfigError, match="not an http"):
        runtime_settings({contract.REPORT_URL: "operator:8443/reports"}, config=TrainerConfig())
