"""Sweeps and scored checkpoints, the parts that need no model: the evaluation block's and the grid's
validation (one clear error each, before anything trains), the course projects' sweep files (validated
offline by the config loader), the curve's choice of best/ and stop rule, the Pareto front, the paired
configuration-vs-configuration deltas, and the state a scoring pass must leave untouched."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from evalkit.errors import ConfigError
from training.__main__ import main
from training.config import load_config, parse_config
from training.curve import Curve, log_line, tracker_metrics, write_curve_plot
from training.sweep import pairwise, pareto_front, parse_sets, plan_grid, point_name

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "training" / "configs"
SWEEP_FILES = {"llama3-8b-lora-r16-vs-r32.yaml": ("lora.r", [16, 32]),
               "gemma-2b-it-lr-2e-4-vs-5e-5.yaml": ("trainer.learning_rate", [2e-4, 5e-5]),
               "qwen2-1.5b-instruct-lr-2e-5-vs-2e-4.yaml": ("trainer.learning_rate", [2e-5, 2e-4]),
               "qwen2-7b-qlora-epochs-3-vs-5.yaml": ("trainer.epochs", [3, 5])}


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hub ids are looked up in the local hub cache only when offline: the GPU models are not cached here."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")


def cpu_config(tmp_path: Path, **evaluation: Any) -> Path:
    """The CPU config writing into tmp_path, with ``evaluation`` as its evaluation block when given."""
    import yaml

    raw = yaml.load((CONFIGS / "smollm2-135m-cpu.yaml").read_text(), Loader=yaml.SafeLoader)
    raw["output_dir"] = str(tmp_path / "run")
    raw["trainer"]["learning_rate"] = 1e-3  # PyYAML 1.1 reads 1e-3 as text; the project's loader does not
    if evaluation:
        raw["evaluation"] = evaluation
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


# ----------------------------------------------------------------------------------- the grid


def error(tmp_path: Path, *specs: str) -> str:
    with pytest.raises(ConfigError) as info:
        plan_grid(cpu_config(tmp_path), list(specs), tmp_path / "sweep")
    return str(info.value)


def test_grid_of_two_keys_names_every_point(tmp_path: Path) -> None:
    base, points = plan_grid(cpu_config(tmp_path), ["lora.r=8,16", "trainer.learning_rate=2e-4,5e-5"], tmp_path / "s")
    assert [p["name"] for p in points] == ["r-8_learning_rate-0.0002", "r-8_learning_rate-5e-05",
                                           "r-16_learning_rate-0.0002", "r-16_learning_rate-5e-05"]
    config = points[3]["config"]
    assert (config.lora.r, config.trainer.learning_rate) == (16, 5e-5)
    assert config.output_dir == str(tmp_path / "s" / "r-16_learning_rate-5e-05") and config.evaluation is None
    assert config.trainer.batch_size == base.trainer.batch_size == 8  # the rest is the config file's


def test_unknown_key_is_one_error_with_the_fix(tmp_path: Path) -> None:
    message = error(tmp_path, "lora.rank=8,16")
    assert message.count("\n  - ") == 1 and "--set lora.rank: unknown key" in message and "did you mean lora.r?" in message
    assert "did you mean trainer.epochs?" in error(tmp_path, "trainr.epochs=1,2")


def test_empty_list_is_one_error(tmp_path: Path) -> None:
    for spec in ("lora.r=", "lora.r=,,"):
        message = error(tmp_path, spec)
        assert "--set lora.r: the list of values is empty" in message and "Fix:" in message


def test_wrong_type_names_the_key_the_value_and_the_fix(tmp_path: Path) -> None:
    message = error(tmp_path, "lora.r=8,sixteen")
    assert "--set lora.r: value 'sixteen' (str)" in message and "Fix: write a whole number" in message
    assert "--set trainer.learning_rate: value 'fast'" in error(tmp_path, "trainer.learning_rate=2e-4,fast")
    assert "--set lora.alpha: value True (bool)" in error(tmp_path, "lora.alpha=true")
    assert "--set lora.dropout: value 1.5" in error(tmp_path, "lora.dropout=0,1.5")  # out of range


def test_other_grid_mistakes(tmp_path: Path) -> None:
    assert "expected KEY=V1,V2" in error(tmp_path, "lora.r8")
    assert "given twice" in error(tmp_path, "lora.r=8", "lora.r=16")
    assert "listed twice" in error(tmp_path, "lora.r=8,8")
    assert "output_dir is not swept" in error(tmp_path, "output_dir=a,b")
    assert "no grid" in error(tmp_path)
    two = error(tmp_path, "lora.rank=8", "trainer.epoch=1")
    assert two.startswith("sweep: 2 problems") and "lora.rank" in two and "trainer.epoch" in two


def test_bad_grid_exits_2_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", "--config", str(cpu_config(tmp_path)), "--set", "lora.rank=8,16"]) == 2
    assert "did you mean lora.r?" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_values_are_read_as_the_config_file_reads_them() -> None:
    assert parse_sets(["trainer.learning_rate=2e-4,1e-3", "trainer.gradient_checkpointing=true,false",
                       "trainer.scheduler=linear,cosine"]) == [
        ("trainer.learning_rate", [2e-4, 1e-3]), ("trainer.gradient_checkpointing", [True, False]),
        ("trainer.scheduler", ["linear", "cosine"])]
    assert point_name([("lora.target_modules", ["q_proj", "v_proj"])]) == "target_modules-q-proj-v-proj"


@pytest.mark.parametrize("name", sorted(SWEEP_FILES))
def test_course_sweep_files_validate_offline(name: str, online: None, tmp_path: Path) -> None:
    config = load_config(CONFIGS / name)
    key, values = SWEEP_FILES[name]
    assert config.sweep == {key: values}
    assert config.data.split == "train" and not config.data.allow_eval_split and config.trainer.device == "cuda"
    assert config.evaluation is not None and config.evaluation.gates
    _, points = plan_grid(CONFIGS / name, [], tmp_path)
    section, _, leaf = key.partition(".")
    assert [getattr(getattr(p["config"], section), leaf) for p in points] == values


def test_course_corrections(online: None) -> None:
    qwen15 = load_config(CONFIGS / "qwen2-1.5b-instruct-lr-2e-5-vs-2e-4.yaml")
    assert qwen15.trainer.max_length >= 1024  # the report's 64 cut every example before its SQL
    assert load_config(CONFIGS / "qwen2-7b-qlora-epochs-3-vs-5.yaml").data.split == "train"  # it trained on dev


def test_a_sweep_file_is_not_trained_as_one_run(online: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(CONFIGS / "llama3-8b-lora-r16-vs-r32.yaml")]) == 2
    assert "is a sweep file" in capsys.readouterr().err


def test_bad_sweep_block_in_a_file(tmp_path: Path) -> None:
    raw = {"output_dir": str(tmp_path / "r"), "sweep": {"lora.rnk": [8], "trainer.epochs": []}}
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert "sweep.lora.rnk: unknown key" in str(info.value) and "sweep.trainer.epochs: the list of values is empty" \
        in str(info.value)


# ----------------------------------------------------------------------------------- the evaluation block


def eval_error(tmp_path: Path, **evaluation: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(cpu_config(tmp_path, **evaluation))
    return str(info.value)


def test_evaluation_block_errors(tmp_path: Path) -> None:
    assert "evaluation.suites: unknown suite 'spidr'" in eval_error(tmp_path, suites=["spidr"])
    assert "evaluation.samples.mmlu" in eval_error(tmp_path, suites=["spider", "arc_easy"], samples={"mmlu": 3})
    assert "evaluation.gates: 'forgeting.delta >= -0.02'" in eval_error(tmp_path, gates=["forgeting.delta >= -0.02"])
    assert "evaluation.select: 'gates'" in eval_error(tmp_path, select="gates")
    assert "evaluation.stop_when_cost_fails needs" in eval_error(tmp_path, stop_when_cost_fails=2)
    assert "did you mean 'every'?" in eval_error(tmp_path, evry=3)
    assert "evaluation.every" in eval_error(tmp_path, every="daily")
    assert "evaluation.cost" in eval_error(tmp_path, suites=["spider"])


def test_scored_cpu_config_validates() -> None:
    config = load_config(CONFIGS / "smollm2-135m-cpu-scored.yaml")
    plain = load_config(CONFIGS / "smollm2-135m-cpu.yaml")
    assert config.evaluation.every == 7 and config.evaluation.select == "gates"
    assert config.model_dump(exclude={"evaluation", "output_dir"}) == plain.model_dump(exclude={"evaluation", "output_dir"})


def test_evaluation_options_are_the_plugins() -> None:
    from training.scoring import plugin_args, run_config

    config = load_config(CONFIGS / "smollm2-135m-cpu-scored.yaml")
    cfg = run_config(config, "unused")
    assert [s.name for s in cfg.suites] == ["spider", "arc_easy", "piqa"]
    assert [g.text for g in cfg.gates] == ["forgetting.delta >= -0.05"]
    spider = cfg.suites[0]
    assert spider.sample == 4 and spider.prompt_options == {"sample_rows": 0, "schema": "compact"}
    args = plugin_args(config)
    assert "--spider-sample=4" in args and "--gate=forgetting.delta >= -0.05" in args and "--spider-schema=compact" in args


# ----------------------------------------------------------------------------------- curve, best, stop


def point(name: str, step: int, gain: float, passes: bool) -> dict[str, Any]:
    return {"name": name, "step": step, "epoch": step / 21, "adapter": name, "passes": passes, "seconds": 10.0,
            "gain": {"suite": "spider", "delta": gain, "lo": gain - 0.1, "hi": gain + 0.1, "n": 16, "p_value": 0.5},
            "cost": {"suite": "forgetting", "delta": -0.01, "lo": -0.08, "hi": 0.06, "n": 60, "p_value": 0.7},
            "gates": [{"gate": "forgetting.delta >= -0.05", "label": f"forgetting.delta@{name}", "kind": "delta",
                       "verdict": "PASS" if passes else "FAIL", "threshold": -0.05, "suite": "forgetting"}]}


def test_best_is_the_largest_gain_that_passes(tmp_path: Path) -> None:
    curve = Curve(tmp_path, {"run": "r"})
    for p in (point("step-7", 7, 0.05, True), point("step-14", 14, 0.20, False), point("step-21", 21, 0.10, True)):
        curve.add(p)
    assert curve.best()["name"] == "step-21"
    curve.add(point("step-28", 28, 0.10, True))
    assert curve.best()["name"] == "step-21"  # a tie keeps the earlier checkpoint
    assert Curve(tmp_path, {}, [point("a", 1, 0.3, False)]).best() is None


def test_failing_streak_counts_the_last_checkpoints(tmp_path: Path) -> None:
    curve = Curve(tmp_path, {})
    for step, passes in ((1, False), (2, True), (3, False), (4, False)):
        curve.add(point(f"step-{step}", step, 0.0, passes))
    assert curve.failing_streak() == 2


def test_curve_files_and_log_line(tmp_path: Path) -> None:
    curve = Curve(tmp_path, {"run": "r", "confidence": 0.95})
    curve.add(point("step-7", 7, 0.05, True))
    curve.add(point("step-14", 14, 0.12, False))
    curve.best_name = "step-7"
    json_path, png = curve.write()
    assert json.loads(json_path.read_text())["best"] == "step-7" and png.stat().st_size > 10_000
    assert log_line(point("step-7", 7, 0.05, True)).startswith("scored step-7 (step 7): gain spider +5.0 pp [-5.0, +15.0]")
    metrics = tracker_metrics(point("step-7", 7, 0.05, True))
    assert metrics["tradeoff/gain.spider.delta"] == 0.05 and metrics["tradeoff/gates_pass"] == 1.0
    resumed = Curve.resume(tmp_path, {}, up_to_step=7)
    assert [p["name"] for p in resumed.points] == ["step-7"]
    write_curve_plot({"points": [], "run": "empty"}, tmp_path / "empty.png")  # nothing scored yet: still a plot


def test_preserved_restores_modes_and_every_rng() -> None:
    import numpy as np
    import torch

    from training.scoring import preserved

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5), torch.nn.Linear(2, 2))
    model.train()
    model[2].eval()  # a mixed state must come back as it was, not as model.train()
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    with preserved(model):
        assert not any(m.training for m in model.modules())
        random.random(), np.random.rand(), torch.rand(5)  # scoring that draws from every generator
    assert [m.training for m in model.modules()] == [True, True, True, False]
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected


# ----------------------------------------------------------------------------------- the sweep's answer


def test_pareto_front() -> None:
    def c(name: str, gain: float, cost: float) -> dict[str, Any]:
        return {"name": name, "gain": {"delta": gain}, "cost": {"delta": cost}}

    configs = [c("a", 0.10, -0.02), c("b", 0.05, 0.00), c("c", 0.04, -0.03), c("d", 0.10, -0.02)]
    assert pareto_front(configs) == ["a", "b", "d"]  # c is dominated by a and b; a and d tie


def test_pairwise_deltas_on_the_same_questions() -> None:
    from evalkit.summary import CaseRecord, Layout

    def rec(suite: str, variant: str, i: int, score: float) -> CaseRecord:
        return CaseRecord(suite, variant, f"q{i}", "all", "all", "t", "scored", score=score, passed=bool(score))

    records = [rec("spider", "x", i, 1.0 if i < 30 else 0.0) for i in range(60)]
    records += [rec("spider", "y", i, 1.0 if i < 5 else 0.0) for i in range(60)]
    records += [rec("spider", "z", i, 1.0 if i < 29 else 0.0) for i in range(60)]
    layouts = {"spider": Layout("s", "g", "c")}
    rows = pairwise(records, ["x", "y", "z"], {"gain": ("spider",)}, layouts, 0.95)["gain"]
    by_pair = {(r["a"], r["b"]): r for r in rows}
    assert by_pair[("x", "y")]["delta"] == pytest.approx(-25 / 60) and by_pair[("x", "y")]["differ"]
    assert not by_pair[("x", "z")]["differ"] and by_pair[("x", "z")]["n"] == 60
    assert all(r["p_holm"] >= r["p_value"] for r in rows)
    assert by_pair[("x", "z")]["changed"] == 1 and by_pair[("x", "y")]["changed"] == 25


def test_plugin_warns_that_best_was_chosen_on_the_examples_it_scores(tmp_path: Path) -> None:
    """best/'s training.json lists the selection sample; the plugin's suites say the run does not exclude it."""
    from evalkit.suites import REGISTRY

    provenance = {"data_split": "train", "prompt": {"sample_rows": 0, "schema": "compact"},
                  "selection": {"checkpoint": "step-14", "selection_sample": {"sample_seed": 0,
                                                                              "ids": {"spider": ["dev0001", "dev0002"]}}}}
    spider = REGISTRY["spider"]({"schema": "compact"}, tmp_path)
    warning = spider.contamination("best", provenance)
    assert "'best' (step-14) was chosen among its run's checkpoints on 2 spider examples" in warning
    assert "does not exclude them" in warning and "selection bias" in warning
    assert REGISTRY["arc_easy"]({}, tmp_path).contamination("best", provenance) is None  # not selected on it
    assert spider.contamination("final", {"data_split": "train"}) is None


def test_report_to_reaches_trl(tmp_path: Path) -> None:
    """trainer.report_to names the trackers trl logs to (the loss and the scored checkpoints' figures)."""
    from training.train import _sft_args

    config = parse_config({"output_dir": str(tmp_path / "r"), "trainer": {"report_to": ["tensorboard"]}})
    assert _sft_args(config, tmp_path / "r", "cpu").report_to == ["tensorboard"]
    assert _sft_args(parse_config({"output_dir": str(tmp_path / "r")}), tmp_path / "r", "cpu").report_to in ([], "none")
    with pytest.raises(ConfigError, match="trainer.report_to"):
        parse_config({"output_dir": str(tmp_path / "r"), "trainer": {"report_to": ["tensorbord"]}})


def test_sweep_skips_finished_points_and_resumes_crashed_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Running the sweep command again: a finished point is skipped, a crashed one with a checkpoint resumes,
    one that crashed before its first checkpoint starts over, a new one starts."""
    import subprocess

    from training.sweep import train_points

    _, points = plan_grid(cpu_config(tmp_path), ["lora.r=4,8,16,32"], tmp_path / "s")
    finished, crashed, early, _ = (Path(p["config"].output_dir) for p in points)
    for folder, status in ((finished, "finished"), (crashed, "running"), (early, "running")):
        folder.mkdir(parents=True)
        (folder / "run.json").write_text(json.dumps({"status": status, "wall_time_s": 1.0}))
    (finished / "final").mkdir()
    (finished / "final" / "adapter_config.json").write_text("{}")
    (crashed / "checkpoints" / "checkpoint-3").mkdir(parents=True)
    (crashed / "checkpoints" / "checkpoint-3" / "trainer_state.json").write_text("{}")
    calls: list[list[str]] = []

    def fake_call(command: list[str], cwd: Path) -> int:
        calls.append(command)
        out = Path(json.loads(Path(command[command.index("--config") + 1]).read_text())["output_dir"])
        out.mkdir(parents=True, exist_ok=True)
        (out / "run.json").write_text(json.dumps({"status": "finished", "wall_time_s": 2.0}))
        return 0

    monkeypatch.setattr(subprocess, "call", fake_call)
    done = train_points(points, tmp_path / "s", log=open(tmp_path / "log", "w"))
    assert [d["state"] for d in done] == ["finished", "resume", "restart", "new"]
    assert len(calls) == 3 and calls[0][-1] == "--resume" and "--resume" not in calls[1] + calls[2]
    assert all(c[1:3] == ["-m", "training"] for c in calls)


def test_a_failed_point_stops_the_sweep_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    from training.sweep import train_points

    _, points = plan_grid(cpu_config(tmp_path), ["lora.r=4,8"], tmp_path / "s")
    monkeypatch.setattr(subprocess, "call", lambda command, cwd: 1)
    with pytest.raises(ConfigError, match="training r-4 failed.*run the same sweep command again"):
        train_points(points, tmp_path / "s", log=open(tmp_path / "log", "w"))
