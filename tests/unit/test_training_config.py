"""Training config validation: every mistake is one ConfigError naming the file, the key and the fix,
raised before torch, data or a model loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalkit.errors import ConfigError
from training.__main__ import main
from training.config import TrainingConfig, load_config, parse_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "training" / "configs").glob("*.yaml"))


def write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path) -> None:
    config = load_config(path)
    assert config.data.split != "dev" and not config.data.allow_eval_split


def test_shipped_configs_cover_cpu_and_qlora() -> None:
    modes = {(c.trainer.device, c.quantization.mode) for c in map(load_config, CONFIGS)}
    assert ("cpu", "none") in modes and ("cuda", "4bit") in modes


def test_minimal_config_gets_documented_defaults() -> None:
    config = parse_config({"output_dir": "runs/x"})
    assert config.model.base == "smollm2-135m"
    assert config.data.split == "train" and config.quantization.mode == "none"
    assert config.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]


def test_yaml_exponent_without_dot_is_a_float(tmp_path: Path) -> None:
    # PyYAML (YAML 1.1) reads 2e-4 as the string "2e-4"; the config loader must not.
    path = write(tmp_path, "output_dir: out\ntrainer:\n  learning_rate: 2e-4\n  warmup: 1E-1\n")
    trainer = load_config(path).trainer
    assert trainer.learning_rate == pytest.approx(2e-4) and trainer.warmup == pytest.approx(0.1)


def test_json_config_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps({"output_dir": "out", "lora": {"r": 32, "alpha": 64}}), "run.json")
    assert load_config(path).lora.r == 32


def test_unknown_key_names_key_and_suggests_the_right_one(tmp_path: Path) -> None:
    path = write(tmp_path, "output_dir: out\nlora:\n  rank: 32\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message and "lora.rank: unknown key" in message
    assert "did you mean 'r'?" in message and "alpha" in message


def test_unknown_section_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"trainr: unknown key\. Fix: did you mean 'trainer'\?"):
        parse_config({"output_dir": "out", "trainr": {"epochs": 3}})


@pytest.mark.parametrize(
    ("raw", "key", "fix"),
    [
        ({"trainer": {"epochs": "3"}}, "trainer.epochs", "whole number"),
        ({"trainer": {"epochs": 2.5}}, "trainer.epochs", "whole number"),
        ({"trainer": {"learning_rate": "fast"}}, "trainer.learning_rate", "0.0002"),
        ({"trainer": {"gradient_checkpointing": "yes"}}, "trainer.gradient_checkpointing", "true or false"),
        ({"lora": {"target_modules": "q_proj"}}, "lora.target_modules", "[q_proj, v_proj]"),
        ({"quantization": {"mode": "8bit"}}, "quantization.mode", "one of the values listed"),
        ({"lora": {"dropout": 1.5}}, "lora.dropout", "less than 1"),
        ({"trainer": {"batch_size": 0}}, "trainer.batch_size", "greater than 0"),
    ],
)
def test_wrong_type_or_value_names_key_and_fix(raw: dict, key: str, fix: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"output_dir": "out", **raw}, "cfg.yaml")
    assert f"- {key}:" in str(info.value) and fix in str(info.value)


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"lora": {"r": "8"}, "trainer": {"epochs": 0}}, "cfg.yaml")
    message = str(info.value)
    assert "3 problems" in message
    assert "output_dir: Field required. Fix: add this key." in message
    assert "lora.r:" in message and "trainer.epochs:" in message


def test_missing_base_model_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model\.base: .*nope.* is not a folder with config\.json\. Fix:"):
        parse_config({"output_dir": "out", "model": {"base": str(tmp_path / "nope")}})


def test_hub_id_is_not_checked_on_disk() -> None:
    assert parse_config({"output_dir": "o", "model": {"base": "Qwen/Qwen2-7B-Instruct"}}).model.base.startswith("Qwen")


def test_missing_data_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.data_dir: .* has no spider/ folder\. Fix:"):
        parse_config({"output_dir": "out", "data": {"data_dir": str(tmp_path)}})


def test_dev_split_is_refused_without_allow_eval_split() -> None:
    with pytest.raises(ConfigError, match=r"data\.split: 'dev' is the evaluation split.*allow_eval_split: true"):
        parse_config({"output_dir": "out", "data": {"split": "dev"}})
    allowed = parse_config({"output_dir": "out", "data": {"split": "dev", "allow_eval_split": True}})
    assert isinstance(allowed, TrainingConfig)


def test_qlora_on_explicit_cpu_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"quantization\.mode: '4bit'.*needs CUDA.*Fix: set quantization\.mode: none"):
        parse_config({"output_dir": "out", "quantization": {"mode": "4bit"}, "trainer": {"device": "cpu"}})


def test_missing_file_and_bad_syntax(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"Training config not found: .*missing\.yaml\. Fix:"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"(?s)not valid YAML .*Fix: correct the syntax"):
        load_config(write(tmp_path, "output_dir: [unclosed\n"))
    with pytest.raises(ConfigError, match=r"top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n", "list.yaml"))


def test_cli_prints_one_error_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "output_dir: out\ntrainer:\n  epocs: 3\n")
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "trainer.epocs: unknown key" in err and "'epochs'" in err
