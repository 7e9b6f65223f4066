"""Training config validation: every mistake is one ConfigError naming the file, the key and the fix,
raised before torch, data or a model loads."""

from __future__ import annotations

import json
import re
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


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hub ids are only looked up in the local hub cache when offline; these tests are about the schema."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path, online: None) -> None:
    config = load_config(path)
    assert config.data.split != "dev" and not config.data.allow_eval_split


def test_shipped_configs_cover_cpu_and_qlora(online: None) -> None:
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
        ({"prompt": {"schema": "short"}}, "prompt.schema", "one of the values listed"),
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


def test_hub_id_is_not_checked_on_disk_when_online(online: None) -> None:
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


def test_config_that_is_not_utf8_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("# réglages\noutput_dir: out\n".encode("latin-1"))
    assert main(["--config", str(path)]) == 2
    assert f"{path}, line 1: not UTF-8 text (byte 0xe9)" in capsys.readouterr().err


@pytest.mark.parametrize(("name", "text", "line"), [
    ("dup.yaml", "output_dir: out\ntrainer:\n  epochs: 3\n  batch_size: 2\n  epochs: 1\n", 5),
    ("dup.json", '{"output_dir": "a",\n "output_dir": "b"}', None),
])
def test_duplicate_keys_are_refused(tmp_path: Path, name: str, text: str, line: int | None) -> None:
    """The last value used to win silently, which contradicts strict validation."""
    with pytest.raises(ConfigError, match="duplicate key") as caught:
        load_config(write(tmp_path, text, name))
    assert line is None or f"line {line}" in str(caught.value)


@pytest.mark.parametrize(("raw", "message"), [
    ({"trainer": {"learning_rate": float("inf")}}, "trainer.learning_rate: Input should be a finite number"),
    ({"trainer": {"learning_rate": float("nan")}}, "trainer.learning_rate: Input should be a finite number"),
    ({"lora": {"target_modules": []}}, "lora.target_modules: List should have at least 1 item"),
    ({"output_dir": ""}, "output_dir: empty. Fix: name the folder the run writes"),
])
def test_values_that_would_train_nothing_are_refused(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config({"output_dir": "out", **raw})


def test_misspelt_target_module_is_checked_against_the_models_weights() -> None:
    from evalkit.models import materialise_embedded

    folder = str(materialise_embedded())
    with pytest.raises(ConfigError, match=r"lora\.target_modules: 'q_prj' names no module of .*did you mean 'q_proj'"):
        parse_config({"output_dir": "out", "model": {"base": folder}, "lora": {"target_modules": ["q_prj", "v_proj"]}})
    assert parse_config({"output_dir": "out", "model": {"base": folder},
                         "lora": {"target_modules": ["all-linear"]}}).lora.target_modules == ["all-linear"]


def test_relative_base_model_that_is_neither_a_folder_nor_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """models/mine reads as a hub id; offline and not in the hub cache it failed only after loading (13 s)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ConfigError, match=r"model\.base: 'models/mine' is not a folder .* nor in the local hub cache"):
        parse_config({"output_dir": "out", "model": {"base": "models/mine"}})


def test_output_dir_under_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"output_dir: .*notes\.txt is a file, not a folder"):
        parse_config({"output_dir": str(tmp_path / "notes.txt" / "run")})


def test_unwritable_output_dir_is_refused_before_loading(tmp_path: Path, run_unprivileged) -> None:
    """A read-only output_dir raised PermissionError after 12 s of loading."""
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    try:
        run = run_unprivileged(f"""
from training.config import parse_config
from evalkit.errors import ConfigError
try:
    parse_config({{"output_dir": {str(tmp_path / "ro" / "run")!r}}})
except ConfigError as exc:
    print(exc)
""")
    finally:
        (tmp_path / "ro").chmod(0o755)
    assert run.returncode == 0, run.stderr
    assert "output_dir: " in run.stdout and "cannot be written" in run.stdout and "Fix:" in run.stdout


def laughs(levels: int) -> str:
    """The "billion laughs": each level a list of nine aliases to the level below (2 KB for nine levels),
    the last one the value of trainer.epochs."""
    lines = ["output_dir: out", "levels:", '  - &a0 ["lol"]']
    lines += [f"  - &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join([*lines, "trainer:", f"  epochs: *a{levels}"]) + "\n"


@pytest.mark.parametrize("levels", [5, 9])
def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path: Path, levels: int) -> None:
    """Nine levels hung and grew past 2.6 GB before a MemoryError; five gave a 5.2-million-character error."""
    with pytest.raises(ConfigError, match=r"expands to more than 10,000 values .*billion laughs.* Fix: write the "
                                          r"values out") as caught:
        load_config(write(tmp_path, laughs(levels)))
    assert len(str(caught.value)) < 500


def test_values_in_error_messages_are_clipped(tmp_path: Path) -> None:
    """Three levels stay under the cap; the value the error quotes is clipped, not 729 lists long."""
    with pytest.raises(ConfigError, match=r"levels: unknown key") as caught:
        load_config(write(tmp_path, laughs(3)))
    assert re.search(r"trainer\.epochs: .*\(got \[\[\[\['lol'\], .*… \([\d,]+ characters\), a list\)", str(caught.value))
    assert len(str(caught.value)) < 1000
    with pytest.raises(ConfigError, match=r"trainer\.epochs: .*\(got 'xxxx.*… \(100,002 characters\), a str\)"):
        parse_config({"output_dir": "out", "trainer": {"epochs": "x" * 100_000}})


@pytest.mark.parametrize(("raw", "message"), [
    ({"trainer": {"epochs": 10**12}}, "trainer.epochs: Input should be less than or equal to 1000"),
    ({"trainer": {"seed": 10**22}}, "trainer.seed: Input should be less than 4294967296"),
    ({"trainer": {"seed": -1}}, "trainer.seed: Input should be greater than or equal to 0"),
    ({"data": {"seed": 2**32}}, "data.seed: Input should be less than 4294967296"),
])
def test_epochs_and_seeds_out_of_range_are_refused(raw: dict, message: str) -> None:
    """10**12 epochs and a 23-digit seed passed validation and failed only once the model had loaded."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config({"output_dir": "out", **raw})


@pytest.mark.parametrize("folder", ["/etc", "../../etc"])
def test_an_output_dir_holding_other_files_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folder: str) -> None:
    """/etc or ../../etc was accepted: the run would write epoch-N/, final/ and loss.png among its files."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("x")
    target = folder if folder.startswith("..") else "/etc"
    with pytest.raises(ConfigError, match=rf"output_dir: '{re.escape(target)}' \(.*etc\) is a folder that holds other "
                                          r"files and no training run \(run\.json\)\. Fix: name a new or empty folder"):
        parse_config({"output_dir": target})


def test_an_output_dir_that_is_new_empty_or_a_run_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text("{}")
    (tmp_path / "run" / "loss.png").write_text("")
    for folder in ("new", "empty", "run"):
        assert parse_config({"output_dir": str(tmp_path / folder)}).output_dir == str(tmp_path / folder)
