"""Scored checkpoints end to end on the embedded model and the real data: scoring every step against the
base (LoRA disabled, no second copy of the weights) leaves the trained adapter the same bit for bit as a
run without it; the curve, best/ and the stop rule are written as documented."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from training import parse_config, train


def config(out: Path, data_dir: Path, evaluation: dict[str, Any] | None = None, **trainer: Any) -> dict[str, Any]:
    """Four steps of four short examples; dropout on, so a mode or RNG left changed by scoring would show."""
    raw: dict[str, Any] = {
        "output_dir": str(out),
        "data": {"split": "train", "sample": 16, "seed": 1, "data_dir": str(data_dir)},
        "prompt": {"schema": "compact"},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]},
        "trainer": {"epochs": 1, "batch_size": 4, "learning_rate": 2e-3, "max_length": 384, "device": "cpu",
                    **trainer},
    }
    if evaluation is not None:
        raw["evaluation"] = evaluation
    return raw


SCORED = {"suites": ["spider", "arc_easy"], "samples": {"spider": 1, "arc_easy": 3}, "every": 1,
          "gates": ["arc_easy.delta >= -0.9"], "select": "gates", "max_new_tokens": 32}


@pytest.fixture(scope="module")
def both_runs(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, Path, dict, dict]:
    root = tmp_path_factory.mktemp("scoring")
    plain = train(parse_config(config(root / "plain", data_dir)), "plain")
    scored = train(parse_config(config(root / "scored", data_dir, SCORED)), "scored")
    return root / "plain", root / "scored", plain, scored


@pytest.mark.model
def test_adapter_is_bit_identical_with_scoring_on_or_off(both_runs: tuple[Path, Path, dict, dict]) -> None:
    from safetensors.torch import load_file

    plain_dir, scored_dir, plain, scored = both_runs
    assert scored["evaluation"]["points"] == plain["steps"] >= 3  # every step was scored, the base once
    assert len(plain["train_loss"]) == plain["steps"]  # scoring's own log() must not swallow a loss line
    assert [e["loss"] for e in scored["train_loss"]] == [e["loss"] for e in plain["train_loss"]]
    for name in ("final", "epoch-1"):
        a, b = (load_file(folder / name / "adapter_model.safetensors") for folder in (plain_dir, scored_dir))
        assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a), name


@pytest.mark.model
def test_curve_best_and_training_json(both_runs: tuple[Path, Path, dict, dict]) -> None:
    _, scored_dir, _, scored = both_runs
    curve = json.loads((scored_dir / "tradeoff_curve.json").read_text())
    assert [p["name"] for p in curve["points"]] == [f"step-{i}" for i in range(1, scored["steps"] + 1)]
    assert curve["gain"] == "spider" and curve["cost"] == "forgetting"  # the family's macro: ARC-Easy alone here
    for point in curve["points"]:
        assert point["gain"]["n"] == 4 and point["cost"]["n"] == 3  # one Spider question per hardness level
        assert point["gain"]["lo"] <= point["gain"]["delta"] <= point["gain"]["hi"]
        assert [g["verdict"] for g in point["gates"]] == ["PASS"]
    assert (scored_dir / "tradeoff_curve.png").stat().st_size > 10_000
    best = curve["best"]
    expected = max(curve["points"], key=lambda p: (p["gain"]["delta"], -p["step"]))["name"]
    assert best == expected
    selection = json.loads((scored_dir / "best" / "training.json").read_text())["selection"]
    assert selection["checkpoint"] == best and selection["excluded_from_plugin_evaluation"] is False
    assert sorted(selection["selection_sample"]["ids"]) == ["arc_easy", "spider"]
    assert scored["evaluation"]["best"]["checkpoint"] == best
    assert (scored_dir / "best" / "adapter_model.safetensors").read_bytes() == \
        (scored_dir / best / "adapter_model.safetensors").read_bytes()
    # the figures reached the trainer's log (and so the trackers of report_to)
    state = json.loads(next((scored_dir / "checkpoints").glob("checkpoint-*/trainer_state.json")).read_text())
    assert sum("tradeoff/gain.spider.delta" in entry for entry in state["log_history"]) == scored["steps"]


@pytest.mark.model
def test_stop_when_cost_fails(tmp_path: Path, data_dir: Path) -> None:
    """A gate no checkpoint of a few steps can pass (the CI's lower bound of the ARC-Easy delta at +90 pp) fails
    twice in a row: training stops there."""
    evaluation = {**SCORED, "gates": ["arc_easy.delta.lo >= 0.9"], "select": "gates", "stop_when_cost_fails": 2}
    run = train(parse_config(config(tmp_path / "run", data_dir, evaluation)), "stop")
    assert run["steps"] == 2 and run["evaluation"]["stopped"]["step"] == 2
    assert run["evaluation"]["best"] is None and not (tmp_path / "run" / "best").exists()
