"""Training end to end on the real embedded model and the real Spider files: a few CPU steps write
adapters that evalkit loads and that change greedy generations; the eval-split guard; resume after a
killed run. The QLoRA path needs CUDA and is skipped elsewhere."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from evalkit.errors import ConfigError
from training import parse_config, provenance, train
from training.train import select_examples

ROOT = Path(__file__).resolve().parents[2]


def tiny_config(out: Path, data_dir: Path, **trainer: Any) -> dict[str, Any]:
    """A run of a few steps: short Spider examples, rank 8 on q/v, a high learning rate."""
    return {
        "output_dir": str(out),
        "data": {"split": "train", "sample": 12, "seed": 1, "data_dir": str(data_dir)},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
        "trainer": {"epochs": 2, "batch_size": 4, "learning_rate": 2e-3, "max_length": 384, "device": "cpu",
                    **trainer},
    }


def greedy(loaded: Any, prompts: list[str]) -> list[str]:
    import torch

    tok = loaded.tokenizer
    batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = loaded.model.generate(**batch, max_new_tokens=24, do_sample=False, pad_token_id=tok.pad_token_id)
    return [tok.decode(row[batch["input_ids"].shape[1]:], skip_special_tokens=True) for row in out]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("training") / "run"
    return out, train(parse_config(tiny_config(out, data_dir)), "tiny")


@pytest.mark.model
def test_gradient_checkpointing_trains_the_same_adapter(tiny_run: tuple[Path, dict[str, Any]], tmp_path: Path,
                                                        data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU config checkpoints gradients to save memory (docs/benchmarks.md#training); with no dropout
    the recomputed activations are the ones it dropped, so the adapter must be the same bit for bit."""
    import transformers.modeling_utils
    from safetensors.torch import load_file

    checkpointed_layers: list[int] = []
    checkpoint = transformers.modeling_utils.checkpoint  # what transformers binds when checkpointing is enabled
    monkeypatch.setattr(transformers.modeling_utils, "checkpoint",
                        lambda *args, **kwargs: checkpointed_layers.append(1) or checkpoint(*args, **kwargs))
    out, run = tiny_run
    checkpointed = train(parse_config(tiny_config(tmp_path / "run", data_dir, gradient_checkpointing=True)), "tiny")
    assert len(checkpointed_layers) >= 30  # the run did checkpoint (30 decoder layers a step)
    assert [e["loss"] for e in checkpointed["train_loss"]] == [e["loss"] for e in run["train_loss"]]
    plain, recomputed = (load_file(folder / "final" / "adapter_model.safetensors") for folder in (out, tmp_path / "run"))
    assert plain.keys() == recomputed.keys() and all(plain[k].equal(recomputed[k]) for k in plain)


@pytest.mark.model
def test_cpu_run_writes_adapters_manifest_and_curve(tiny_run: tuple[Path, dict[str, Any]]) -> None:
    out, run = tiny_run
    for name in ("epoch-1", "epoch-2", "final"):
        assert (out / name / "adapter_config.json").is_file() and (out / name / "adapter_model.safetensors").is_file()
    assert run["adapters"] == ["epoch-1", "epoch-2", "final"]
    on_disk = json.loads((out / "run.json").read_text())
    assert on_disk == run and run["status"] == "finished"
    assert run["versions"]["peft"] and run["versions"]["trl"] and run["versions"]["torch"]
    assert len(run["data"]["checksum"]) == 64 and run["seed"] == 42 and run["wall_time_s"] > 0
    assert run["data"]["used"] == len(run["data"]["example_ids"]) > 0 and run["trained_on_eval_data"] is False
    steps = [entry["step"] for entry in run["train_loss"]]
    assert steps == list(range(1, run["steps"] + 1)) and all(entry["loss"] > 0 for entry in run["train_loss"])
    assert set(run["epoch_mean_loss"]) == {"1", "2"}
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert provenance(out / "epoch-1") == {**provenance(out / "final"), "epoch": 1, "step": steps[-1] // 2}
    assert provenance(out / "final")["trained_on_eval_data"] is False


@pytest.mark.model
def test_adapter_loads_in_evalkit_and_changes_generations(tiny_run: tuple[Path, dict[str, Any]], embedded_model,
                                                          data_dir: Path) -> None:
    from evalkit.data.spider import load_spider
    from evalkit.models import load_model
    from evalkit.prompts import spider_chat_prompt

    out, _ = tiny_run
    tuned = load_model("smollm2-135m", adapter=out / "final")
    assert tuned.adapter_fingerprint and tuned.fingerprint != embedded_model.fingerprint
    dev = [e for e in load_spider("dev", data_dir) if not e.skip_reason][:2]
    prompts = [spider_chat_prompt(e, embedded_model.tokenizer) for e in dev]
    assert greedy(tuned, prompts) != greedy(embedded_model, prompts)


@pytest.mark.model
def test_existing_run_is_not_overwritten_and_resume_checks_config(tiny_run: tuple[Path, dict[str, Any]],
                                                                   data_dir: Path) -> None:
    out, _ = tiny_run
    with pytest.raises(ConfigError, match=r"output_dir: .* already holds a training run\. Fix: pass --resume"):
        train(parse_config(tiny_config(out, data_dir)))
    changed = parse_config(tiny_config(out, data_dir, learning_rate=1e-4))
    with pytest.raises(ConfigError, match=r"--resume: the config differs .*\(trainer\.learning_rate\)"):
        train(changed, resume=True)


def test_train_questions_seen_in_dev_are_excluded_unless_allowed(data_dir: Path) -> None:
    config = {"output_dir": "unused", "data": {"split": "train", "data_dir": str(data_dir)}}
    examples, facts = select_examples(parse_config(config))
    overlap = facts["eval_overlap"]
    assert overlap["count"] > 0 and overlap["included"] is False
    assert not {e.id for e in examples} & set(overlap["ids"])
    config["data"]["allow_eval_split"] = True
    kept, facts = select_examples(parse_config(config))
    assert set(overlap["ids"]) <= {e.id for e in kept} and facts["eval_overlap"]["included"] is True


def test_dev_split_only_with_allow_eval_split(data_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "dev.yaml"
    path.write_text(f"output_dir: {tmp_path / 'out'}\ndata:\n  split: dev\n  data_dir: {data_dir}\n")
    done = subprocess.run([sys.executable, "-m", "training", "--config", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "data.split: 'dev' is the evaluation split" in done.stderr
    assert "allow_eval_split: true" in done.stderr and not (tmp_path / "out").exists()
    config = {"output_dir": "unused", "data": {"split": "dev", "allow_eval_split": True, "data_dir": str(data_dir)}}
    examples, facts = select_examples(parse_config(config))
    assert {e.split for e in examples} == {"dev"} and facts["eval_overlap"]["count"] == facts["loaded"]


@pytest.mark.model
def test_training_on_dev_when_allowed_is_recorded(tmp_path: Path, data_dir: Path) -> None:
    config = tiny_config(tmp_path / "dev", data_dir, max_steps=1)
    config["data"] = {"split": "dev", "allow_eval_split": True, "sample": 4, "data_dir": str(data_dir)}
    run = train(parse_config(config))
    assert run["trained_on_eval_data"] is True and run["data"]["allow_eval_split"] is True
    assert provenance(tmp_path / "dev" / "final")["trained_on_eval_data"] is True


def test_qlora_on_a_machine_without_cuda_fails_before_loading(tmp_path: Path, data_dir: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the refusal applies to CPU-only machines")
    config = parse_config({**tiny_config(tmp_path / "q", data_dir, device="auto"), "quantization": {"mode": "4bit"}})
    with pytest.raises(ConfigError, match=r"quantization\.mode: '4bit' .* needs a CUDA GPU.*Fix:"):
        train(config)
    assert not (tmp_path / "q").exists()


@pytest.mark.model
def test_resume_after_the_process_is_killed(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "run"
    path = tmp_path / "resume.json"
    path.write_text(json.dumps(tiny_config(out, data_dir, save_steps=1, epochs=2, batch_size=2)))
    command = [sys.executable, "-m", "training", "--config", str(path)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not list(out.glob("checkpoints/checkpoint-*/trainer_state.json")):
        assert first.poll() is None, f"training exited before its first checkpoint: {first.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "no checkpoint within 180 s"
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert not (out / "final").exists() and json.loads((out / "run.json").read_text())["status"] == "running"

    refused = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--resume" in refused.stderr

    resumed = subprocess.run([*command, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from checkpoint-" in resumed.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished" and (out / "final" / "adapter_config.json").is_file()
    first_session, second_session = run["sessions"]
    assert first_session["wall_time_s"] is None and second_session["resumed_from"].startswith("checkpoint-")
    assert [entry["step"] for entry in run["train_loss"]] == list(range(1, run["steps"] + 1))
    assert run["adapters"] == ["epoch-1", "epoch-2", "final"]


def test_qlora_trains_on_cuda(tmp_path: Path, data_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("QLoRA (bitsandbytes NF4) needs a CUDA GPU; this machine has none")
    from evalkit.models import load_model

    config = tiny_config(tmp_path / "qlora", data_dir, device="cuda", max_steps=2)
    run = train(parse_config({**config, "quantization": {"mode": "4bit", "compute_dtype": "bfloat16"}}))
    assert run["status"] == "finished" and run["device"] == "cuda" and run["steps"] == 2
    tuned = load_model("smollm2-135m", adapter=tmp_path / "qlora" / "final", load_in_4bit=True)
    assert tuned.adapter_fingerprint
