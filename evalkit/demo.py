"""``python -m evalkit demo``: the whole story on the embedded model, from a fresh clone to the answer.

It trains the CPU LoRA adapter when it does not exist yet (``python -m training``), then evaluates the
base model and the adapter through the pytest plugin, the same code path as ``pytest tests/eval``: Spider
dev (the skill trained) and MMLU in the cloze format (what it may cost; the letters format is at chance
for a 135M model), and prints the summary and the answer in words. A rerun reuses the adapter and the
result cache, so it takes about a minute; ``--fresh`` starts over.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "training" / "configs" / "smollm2-135m-cpu.yaml"
REPORT_DIR = ROOT / "reports" / "demo"
ADAPTER_NAME = "cpu-lora"
GATES = ("spider.delta >= 0", "mmlu.delta >= -0.02")


def _say(message: str) -> None:
    print(f"[demo] {message}", file=sys.stderr, flush=True)


def _run(command: list[str]) -> int:
    _say("$ " + " ".join(command))
    return subprocess.call(command, cwd=ROOT)


def train_if_needed(config_path: Path, fresh: bool) -> Path | None:
    """The adapter's ``final/`` folder, training (or resuming) it first when it is missing; None on failure."""
    from training.config import load_config

    out = (ROOT / load_config(config_path).output_dir).resolve()
    if fresh and out.exists():
        _say(f"--fresh: removing {out}")
        shutil.rmtree(out)
    final = out / "final"
    if (final / "adapter_config.json").is_file():
        _say(f"step 1/2: adapter {final} exists, reusing it (--fresh trains it again)")
        return final
    _say(f"step 1/2: training the CPU adapter into {out} (minutes; progress below)")
    command = [sys.executable, "-m", "training", "--config", str(config_path)]
    if out.exists():
        command.append("--resume")
    if _run(command) != 0 or not (final / "adapter_config.json").is_file():
        _say(f"training did not produce {final}; see the error above")
        return None
    return final


def evaluate(adapter: Path, spider_sample: str, mmlu_sample: str, fresh: bool, extra: list[str]) -> int:
    """Base vs adapter through the plugin; pytest's exit status (the gates decide it)."""
    if fresh and REPORT_DIR.exists():
        shutil.rmtree(REPORT_DIR)
    _say("step 2/2: evaluating base and adapter (Spider dev, MMLU cloze); a rerun reads the result cache")
    command = [sys.executable, "-m", "pytest", "tests/eval", "-q", "-p", "no:cacheprovider",
               f"--adapter={ADAPTER_NAME}={adapter}", "--suites=spider,mmlu", "--mmlu-format=cloze",
               f"--spider-sample={spider_sample}", f"--mmlu-sample={mmlu_sample}", f"--report-dir={REPORT_DIR}",
               *(f"--gate={gate}" for gate in GATES), *extra]
    return _run(command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evalkit demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=CONFIG, help="training config of the adapter")
    parser.add_argument("--spider-sample", default="25", help="Spider dev questions per hardness level, or 'all'")
    parser.add_argument("--mmlu-sample", default="2", help="MMLU questions per subject, or 'all'")
    parser.add_argument("--fresh", action="store_true", help="train the adapter again and drop the old report")
    args, extra = parser.parse_known_args(argv)
    adapter = train_if_needed(args.config.resolve(), args.fresh)
    if adapter is None:
        return 2
    status = evaluate(adapter, args.spider_sample, args.mmlu_sample, args.fresh, extra)
    _say(f"report: {REPORT_DIR}/tradeoff.md (the answer on top), tradeoff.json, cases.jsonl, plots")
    return status
