"""Fine-tune a LoRA or QLoRA adapter on Spider train with trl's ``SFTTrainer``.

The pieces, in the order a run uses them:

- :func:`select_examples` picks the Spider examples (split, eval-overlap guard, missing databases, seeded
  sample) and describes the choice for ``run.json``.
- :func:`build_rows` turns them into trl's conversational prompt/completion rows, with the prompt from
  ``evalkit.prompts.spider_chat_messages`` (the one evaluation uses), so trl puts the loss on the
  assistant's SQL only (``spider_sql_target``: the gold query with tokeniser spacing removed), never on
  the schema. Rows longer than ``max_length`` are dropped rather than
  truncated: a truncated row teaches a cut-off query, or no query at all.
- :func:`train` loads the base model (the embedded alias through ``evalkit.models.materialise_embedded``,
  the dense safetensors folder, never the GGUF), trains, saves ``epoch-<k>/`` after every epoch and
  ``final/``, and writes ``run.json`` and ``loss.png``. Trainer checkpoints under ``checkpoints/`` make
  ``--resume`` possible after a crash.

Every adapter folder gets a ``training.json`` (read back by :func:`evalkit.models.adapter_provenance`) so
that a report built on it can say what it was trained on, in particular whether it saw evaluation questions.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from evalkit.data.spider import SpiderExample, checksum, load_spider
from evalkit.errors import ConfigError
from evalkit.models import PROVENANCE_FILE, load_tokenizer, nf4_config, pick_device, resolve_base
from evalkit.versions import package_versions
from training.config import RUN_FILE, SPLIT_HINT, TrainingConfig

EVAL_SPLIT = "dev"
LIBRARIES = ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "bitsandbytes", "tokenizers")


def _question_key(text: str) -> str:
    """Spider questions differ in spacing and punctuation (``have ?`` vs ``have?``); compare words only."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def select_examples(config: TrainingConfig) -> tuple[list[SpiderExample], dict[str, Any]]:
    """The examples to train on, and a description of how they were chosen (for ``run.json``).

    A train example whose question also appears in the evaluation split is excluded unless
    ``data.allow_eval_split`` is true; Spider's train and dev share no database, so these are generic
    questions such as "How many players are there?", but a report must be able to say "no dev question
    was seen in training" without a footnote.
    """
    data = config.data
    loaded = load_spider(data.split, data.data_dir)
    n_loaded = len(loaded)
    eval_questions = {_question_key(example.question) for example in load_spider(EVAL_SPLIT, data.data_dir)}
    overlap = [e for e in loaded if data.split == EVAL_SPLIT or _question_key(e.question) in eval_questions]
    if overlap and not data.allow_eval_split:
        excluded = {e.id for e in overlap}
        loaded = [e for e in loaded if e.id not in excluded]
    missing_db = [e for e in loaded if e.skip_reason]
    usable = [e for e in loaded if not e.skip_reason]
    if data.sample is not None and data.sample < len(usable):
        usable = sorted(random.Random(data.seed).sample(usable, data.sample), key=lambda e: e.index)
    if not usable:
        raise ConfigError(f"data: no usable {data.split!r} example ({len(missing_db)} lack their database, "
                          f"{len(overlap)} are evaluation questions). Fix: check data.data_dir / TRADEOFF_DATA_DIR, "
                          f"or {SPLIT_HINT}.")
    description = {
        "split": data.split,
        "checksum": checksum(data.split, data.data_dir),
        "eval_split": EVAL_SPLIT,
        "eval_checksum": checksum(EVAL_SPLIT, data.data_dir),
        "sources": sorted({e.source for e in usable}),
        "loaded": n_loaded,
        "eval_overlap": {"count": len(overlap), "included": data.allow_eval_split, "ids": [e.id for e in overlap]},
        "skipped_missing_database": len(missing_db),
        "sample": data.sample,
        "sample_seed": data.seed,
        "allow_eval_split": data.allow_eval_split,
    }
    return usable, description


def build_rows(examples: list[SpiderExample], config: TrainingConfig, tokenizer: Any) -> tuple[list[dict], dict]:
    """trl prompt/completion rows that fit ``trainer.max_length``, and what was dropped."""
    from evalkit.prompts import spider_chat_messages, spider_sql_target

    rows = [
        {"id": e.id,
         "prompt": spider_chat_messages(e, **config.prompt.options()),
         "completion": [{"role": "assistant", "content": spider_sql_target(e)}]}
        for e in examples
    ]
    texts = tokenizer.apply_chat_template([row["prompt"] + row["completion"] for row in rows], tokenize=False)
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    kept = [row for row, length in zip(rows, lengths, strict=True) if length <= config.trainer.max_length]
    if not kept:
        raise ConfigError(f"trainer.max_length: {config.trainer.max_length} tokens is shorter than every example "
                          f"(shortest: {min(lengths)}). Fix: raise trainer.max_length.")
    ids = [row["id"] for row in kept]
    return kept, {
        "dropped_too_long": len(rows) - len(kept),
        "used": len(kept),
        "tokens": {"max": max(lengths), "mean": round(sum(lengths) / len(lengths), 1)},
        "example_ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
        "example_ids": ids,
    }


def _resolve_device(config: TrainingConfig) -> str:
    import torch

    device = pick_device() if config.trainer.device == "auto" else config.trainer.device
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device: 'cuda' but torch sees no CUDA GPU. Fix: set trainer.device: auto or cpu.")
    if config.quantization.mode == "4bit" and device != "cuda":
        raise ConfigError(f"quantization.mode: '4bit' (QLoRA, bitsandbytes NF4) needs a CUDA GPU; this machine "
                          f"trains on {device!r}. Fix: set quantization.mode: none, or run on a GPU.")
    return device


def load_base(config: TrainingConfig, device: str) -> tuple[Any, Any, str]:
    """(model, tokenizer, source), resolved and fixed as evaluation does: fp32 on CPU, the compute dtype on CUDA."""
    import torch
    from transformers import AutoModelForCausalLM

    source, _ = resolve_base(config.model.base)
    dtype = getattr(torch, config.quantization.compute_dtype) if device == "cuda" else torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype}
    if config.quantization.mode == "4bit":
        kwargs["quantization_config"] = nf4_config(dtype)
        kwargs["device_map"] = {"": 0}
    tokenizer = load_tokenizer(source, padding_side="right")
    model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    if config.quantization.mode == "none":
        model.to(device)
    return model, tokenizer, source


def _save_adapter(model: Any, folder: Path, facts: dict[str, Any]) -> None:
    model.save_pretrained(folder)
    (folder / PROVENANCE_FILE).write_text(json.dumps(facts, indent=2) + "\n")


def _make_callbacks(out: Path, facts: dict[str, Any]) -> list[Any]:
    """Callbacks for per-epoch adapters and one-line progress (the trainer's own logger prints dicts)."""
    from transformers import TrainerCallback

    class EpochAdapters(TrainerCallback):
        """Save ``epoch-<k>/`` at the end of every full epoch (a max_steps cut-off mid-epoch is not one)."""

        def on_epoch_end(self, args, state, control, model=None, **kwargs):
            epoch = round(state.epoch or 0)
            if state.is_world_process_zero and epoch >= 1 and abs((state.epoch or 0) - epoch) < 1e-6:
                _save_adapter(model, out / f"epoch-{epoch}", {**facts, "epoch": epoch, "step": state.global_step})
                print(f"[training] saved adapter {out / f'epoch-{epoch}'}", file=sys.stderr, flush=True)

    class Progress(TrainerCallback):
        """``step 12/40 (epoch 1.50) loss 1.2345 lr 1.0e-03 elapsed 0:00:31 eta 0:01:12``."""

        def on_train_begin(self, args, state, control, **kwargs):
            self.start, self.first_step = time.monotonic(), state.global_step

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs or "loss" not in logs:
                return
            elapsed = time.monotonic() - self.start
            done = max(state.global_step - self.first_step, 1)
            eta = elapsed / done * (state.max_steps - state.global_step)
            clock = lambda s: time.strftime("%H:%M:%S", time.gmtime(s))  # noqa: E731
            print(f"[training] step {state.global_step}/{state.max_steps} (epoch {state.epoch:.2f}) "
                  f"loss {logs['loss']:.4f} lr {logs.get('learning_rate', 0):.1e} "
                  f"elapsed {clock(elapsed)} eta {clock(eta)}", file=sys.stderr, flush=True)

    return [EpochAdapters(), Progress()]


def _scored_checkpoints(config: TrainingConfig, out: Path, facts: dict[str, Any], device: str,
                        resumed_step: int) -> Any:
    """The callback that scores checkpoints against the base (``evaluation:``; training/scoring.py), keeps
    the curve (training/curve.py), saves ``best/`` and stops on ``stop_when_cost_fails``."""
    import shutil

    from transformers import TrainerCallback

    from training.curve import Curve, log_line, tracker_metrics
    from training.scoring import Scorer

    ev = config.evaluation
    scorer = Scorer(config, out, device)
    meta = {"run": out.name, "base_model": config.model.base, "gain": scorer.gain, "cost": scorer.cost,
            "suites": {name: len(ids) for name, ids in scorer.sample_ids().items()},
            "sample_seed": ev.seed, "gates": list(ev.gates), "confidence": ev.confidence, "every": ev.every,
            "select": ev.select, "stop_when_cost_fails": ev.stop_when_cost_fails}
    curve = Curve.resume(out, meta, resumed_step)

    class ScoredCheckpoints(TrainerCallback):
        """Score ``step-<N>/`` every N steps (or ``epoch-<k>/`` at each epoch end) against the base."""

        trainer: Any = None  # set after the trainer is built: its log() reaches the trackers of report_to

        def __init__(self) -> None:
            self.scorer, self.curve = scorer, curve

        def _score(self, state: Any, control: Any, model: Any, name: str, save: bool) -> None:
            folder = out / name
            if save:
                _save_adapter(model, folder, {**facts, "epoch": state.epoch, "step": state.global_step})
            point, _ = scorer.score(model, folder, name, state.global_step, state.epoch or 0.0)
            curve.meta["base_scoring_seconds"] = scorer.base_seconds
            curve.add(point.to_json())
            if ev.select == "gates":
                self._select()
            if ev.stop_when_cost_fails and curve.failing_streak() >= ev.stop_when_cost_fails:
                curve.stopped = {"step": state.global_step, "reason": f"{curve.failing_streak()} checkpoints in a row "
                                 f"failed the gates (stop_when_cost_fails: {ev.stop_when_cost_fails})"}
                control.should_training_stop = True
            curve.write()
            print(f"[training] {log_line(point.to_json())}"
                  + (f"; best/ = {curve.best_name}" if ev.select == "gates" else "")
                  + (f"; stopping: {curve.stopped['reason']}" if curve.stopped else ""), file=sys.stderr, flush=True)
            if self.trainer is not None:
                # Trainer.log resets control.should_log (its on_log does), which would drop this step's loss line
                should_log = control.should_log
                self.trainer.log(tracker_metrics(point.to_json()))
                control.should_log = should_log

        def _select(self) -> None:
            best = curve.best()
            if best is None or best["name"] == curve.best_name:
                return
            target = out / "best"
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(out / best["adapter"], target)
            provenance = json.loads((target / PROVENANCE_FILE).read_text())
            provenance["selection"] = selection_record(best, scorer, ev)
            (target / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
            curve.best_name = best["name"]

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if isinstance(ev.every, int) and state.is_world_process_zero and state.global_step % ev.every == 0:
                self._score(state, control, model, f"step-{state.global_step}", save=True)

        def on_epoch_end(self, args, state, control, model=None, **kwargs):
            epoch = round(state.epoch or 0)
            if (ev.every == "epoch" and state.is_world_process_zero and epoch >= 1
                    and abs((state.epoch or 0) - epoch) < 1e-6):
                self._score(state, control, model, f"epoch-{epoch}", save=False)  # EpochAdapters saved it

    return ScoredCheckpoints()


def selection_record(best: dict[str, Any], scorer: Any, ev: Any) -> dict[str, Any]:
    """What best/'s training.json says about how it was chosen, and on which examples (selection bias)."""
    return {
        "checkpoint": best["name"], "step": best["step"], "rule": "select: gates (largest gain whose gates pass)",
        "gain": best["gain"], "cost": best["cost"], "gates": best["gates"],
        "selection_sample": {"sample_seed": ev.seed, "ids": scorer.sample_ids()},
        "excluded_from_plugin_evaluation": False,
        "note": ("chosen on these examples: its figures on them are biased upwards (the best of several "
                 "checkpoints on one sample). `pytest tests/eval --adapter best=...` does NOT exclude them (it warns "
                 "that it did not, per suite); confirm on fresh examples (another --sample-seed, a larger sample)."),
    }


def _last_checkpoint(folder: Path) -> Path | None:
    """The newest complete Trainer checkpoint (a process killed mid-save leaves one without trainer_state.json)."""
    found = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").is_file() and p.name[11:].isdigit()]
    return max(found, key=lambda p: int(p.name[11:]), default=None)


def _loss_history(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keep = ("step", "epoch", "loss", "learning_rate", "grad_norm", "mean_token_accuracy")
    return [{k: entry[k] for k in keep if k in entry} for entry in log_history if "loss" in entry]


def _epoch_means(history: list[dict[str, Any]]) -> dict[str, float]:
    """Mean logged loss per epoch: single steps are noisy, epoch means show whether the loss went down."""
    groups: dict[int, list[float]] = {}
    for entry in history:
        groups.setdefault(max(1, math.ceil(entry["epoch"] - 1e-9)), []).append(entry["loss"])
    return {str(k): round(sum(v) / len(v), 4) for k, v in sorted(groups.items())}


def write_loss_curve(history: list[dict[str, Any]], path: Path, title: str) -> None:
    """Train loss per logged step, with dotted lines at epoch ends."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([h["step"] for h in history], [h["loss"] for h in history], marker=".", linewidth=1)
    for h in history:
        if h["epoch"] > 0 and abs(h["epoch"] - round(h["epoch"])) < 1e-6:
            ax.axvline(h["step"], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="optimizer step", ylabel="train loss (assistant SQL tokens)", title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"lora": {"r": 8}}`` -> ``{"lora.r": 8}``, to name the keys that differ between two configs."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _check_output_dir(out: Path, config: TrainingConfig, resume: bool) -> tuple[Path | None, dict[str, Any]]:
    """(checkpoint to resume from, the previous run.json); refuses to mix two runs in one folder."""
    run_file = out / RUN_FILE
    previous = json.loads(run_file.read_text()) if run_file.is_file() else {}
    if not resume:
        if previous or _last_checkpoint(out / "checkpoints"):
            raise ConfigError(f"output_dir: {out} already holds a training run. Fix: pass --resume to continue it, "
                              "or choose another output_dir (or delete the folder).")
        return None, {}
    checkpoint = _last_checkpoint(out / "checkpoints")
    if checkpoint is None:
        raise ConfigError(f"--resume: no complete checkpoint under {out / 'checkpoints'}. "
                          "Fix: run without --resume to start the run from scratch.")
    now, then = _flat(config.model_dump()), _flat(previous.get("config", {}))
    changed = sorted(key for key in now.keys() | then.keys() if now.get(key) != then.get(key))
    if previous and changed:
        raise ConfigError(f"--resume: the config differs from the run in {out} ({', '.join(changed)}). "
                          "Fix: resume with the config the run started with, or start a new output_dir.")
    return checkpoint, previous


def _sft_args(config: TrainingConfig, out: Path, device: str) -> Any:
    """The config's trainer section as trl ``SFTConfig`` (fp32 and ``use_cpu`` off CUDA: trl defaults to bf16)."""
    from trl import SFTConfig

    t = config.trainer
    cpu = device != "cuda"
    return SFTConfig(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.scheduler,
        warmup_steps=t.warmup,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        optim=t.optim,
        seed=t.seed,
        max_length=t.max_length,
        gradient_checkpointing=t.gradient_checkpointing,
        logging_steps=t.logging_steps,
        save_strategy="steps" if t.save_steps else "epoch",
        save_steps=t.save_steps or 500,
        save_total_limit=1,
        use_cpu=cpu,
        bf16=not cpu and config.quantization.compute_dtype == "bfloat16",
        fp16=not cpu and config.quantization.compute_dtype == "float16",
        report_to=list(t.report_to) or "none",
        disable_tqdm=True,
    )


def train(config: TrainingConfig, config_path: str | Path | None = None, resume: bool = False) -> dict[str, Any]:
    """Run one training job as configured; return the ``run.json`` content (also written to disk)."""
    started = time.monotonic()
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    out = Path(config.output_dir).expanduser()
    checkpoint, previous = _check_output_dir(out, config, resume)
    device = _resolve_device(config)
    examples, data_facts = select_examples(config)

    from datasets import Dataset
    from peft import LoraConfig
    from transformers import PrinterCallback, set_seed
    from trl import SFTTrainer

    set_seed(config.trainer.seed)
    model, tokenizer, source = load_base(config, device)
    rows, row_facts = build_rows(examples, config, tokenizer)
    data_facts.update(row_facts)
    if previous and previous["data"]["example_ids_sha256"] != data_facts["example_ids_sha256"]:
        raise ConfigError(f"--resume: the training examples differ from those the run in {out} started with "
                          "(the data files changed). Fix: restore the data, or start a new output_dir.")
    trained_on_eval = bool(set(data_facts["eval_overlap"]["ids"]) & set(data_facts["example_ids"]))
    facts = {"run": f"../{RUN_FILE}", "base_model": config.model.base, "data_split": config.data.split,
             "data_checksum": data_facts["checksum"], "allow_eval_split": config.data.allow_eval_split,
             "trained_on_eval_data": trained_on_eval, "prompt": config.prompt.options()}
    run: dict[str, Any] = {
        "status": "running",
        "config_file": str(config_path) if config_path else None,
        "config": config.model_dump(),
        "versions": package_versions(LIBRARIES),
        "device": device,
        "base_model": {"spec": config.model.base, "source": source},
        "seed": config.trainer.seed,
        "trained_on_eval_data": trained_on_eval,
        "data": data_facts,
        "sessions": [*previous.get("sessions", []),
                     {"started_at": started_at, "resumed_from": checkpoint.name if checkpoint else None,
                      "wall_time_s": None}],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / RUN_FILE).write_text(json.dumps(run, indent=2) + "\n")

    args = _sft_args(config, out, device)
    target = "all-linear" if config.lora.target_modules == ["all-linear"] else config.lora.target_modules
    peft_config = LoraConfig(r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                             target_modules=target, bias="none", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, processing_class=tokenizer, peft_config=peft_config,
                         train_dataset=Dataset.from_list([{k: r[k] for k in ("prompt", "completion")} for r in rows]),
                         callbacks=_make_callbacks(out, facts))
    trainer.remove_callback(PrinterCallback)
    scored = None
    if config.evaluation is not None:
        scored = _scored_checkpoints(config, out, facts, device, int(checkpoint.name[11:]) if checkpoint else 0)
        scored.trainer = trainer
        trainer.add_callback(scored)
    trainable, total = trainer.model.get_nb_trainable_parameters()
    print(f"[training] {len(rows)} examples on {device}, {trainable:,} trainable of {total:,} parameters, "
          f"{'resuming from ' + checkpoint.name if checkpoint else 'fresh start'}", file=sys.stderr, flush=True)
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)

    state = trainer.state
    _save_adapter(trainer.model, out / "final", {**facts, "epoch": state.epoch, "step": state.global_step})
    history = _loss_history(trainer.state.log_history)
    write_loss_curve(history, out / "loss.png", f"{out.name}: {config.model.base}, r={config.lora.r}")
    wall = round(time.monotonic() - started, 1)
    run["sessions"][-1]["wall_time_s"] = wall
    run.update({
        "status": "finished",
        "parameters": {"trainable": trainable, "total": total},
        "steps": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "train_runtime_s": round(result.metrics.get("train_runtime", 0.0), 1),
        "wall_time_s": wall,
        "train_loss": history,
        "epoch_mean_loss": _epoch_means(history),
        "adapters": sorted(p.name for p in out.iterdir() if (p / "adapter_config.json").is_file()),
        "loss_curve": "loss.png",
    })
    if scored is not None:
        best = scored.curve.best()
        run["evaluation"] = {
            "curve": "tradeoff_curve.json", "plot": "tradeoff_curve.png", "points": len(scored.curve.points),
            "best": (None if best is None or config.evaluation.select != "gates"
                     else {"adapter": "best", **selection_record(best, scored.scorer, config.evaluation)}),
            "stopped": scored.curve.stopped,
            "base_scoring_seconds": scored.scorer.base_seconds,
        }
        scored.curve.write()
    (out / RUN_FILE).write_text(json.dumps(run, indent=2) + "\n")
    print(f"[training] done in {wall:.0f} s: {out / 'final'} (epoch mean loss {run['epoch_mean_loss']})",
          file=sys.stderr, flush=True)
    return run
