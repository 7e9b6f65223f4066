"""``python -m evalkit demo``: the whole story on the embedded model, from a fresh clone to the answer.

It trains the CPU LoRA adapter when it does not exist yet (``python -m training``), then evaluates the
base model and the adapter through the pytest plugin, the same code path as ``pytest tests/eval``: Spider
dev (the skill trained) and, for what it may cost, the forgetting suites on which the embedded model is
above chance (HellaSwag, ARC-Easy, PIQA, OpenBookQA; ARC-Challenge and WinoGrande are at chance for a
135M model) beside MMLU in the cloze format, and prints the summary and the answer in words. A rerun
reuses the adapter and the result cache, so it takes about a minute; ``--fresh`` starts over.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "training" / "configs" / "smollm2-135m-cpu.yaml"
REPORT_DIR = ROOT / "reports" / "demo"
ADAPTER_NAME = "cpu-lora"
GATES = ("spider.delta >= 0", "forgetting.delta >= -0.02", "mmlu.delta >= -0.02")
SPIDER_SAMPLE = "50"  # per hardness level: 192 dev questions (wta_1 is missing), enough to resolve the adapter's gain
MMLU_SAMPLE = "2"  # per subject: 114 questions
# The forgetting suites the embedded model answers above chance (measured on their full splits, docs/benchmarks.md).
FORGETTING = ("hellaswag", "arc_easy", "piqa", "openbookqa")
FORGETTING_SAMPLE = "250"  # per suite: the macro delta's 95% CI half-width about 2 pp (docs/benchmarks.md)


def _say(message: str) -> None:
    print(f"[demo] {message}", file=sys.stderr, flush=True)


def _run(command: list[str]) -> int:
    _say("$ " + " ".join(command))
    return subprocess.call(command, cwd=ROOT)


def train_if_needed(config_path: Path, fresh: bool) -> tuple[Path | None, dict[str, Any]]:
    """The adapter's ``final/`` folder, training (or resuming) it first when it is missing (None on failure),
    and the prompt options it was trained with, which the evaluation must send too."""
    from training.config import load_config

    config = load_config(config_path)
    options = config.prompt.options()
    out = (ROOT / config.output_dir).resolve()
    if fresh and out.exists():
        _say(f"--fresh: removing {out}")
        shutil.rmtree(out)
    final = out / "final"
    if (final / "adapter_config.json").is_file():
        _say(f"step 1/2: adapter {final} exists, reusing it (--fresh trains it again)")
        return final, options
    _say(f"step 1/2: training the CPU adapter into {out} (minutes; progress below)")
    command = [sys.executable, "-m", "training", "--config", str(config_path)]
    if out.exists():
        command.append("--resume")
    if _run(command) != 0 or not (final / "adapter_config.json").is_file():
        _say(f"training did not produce {final}; see the error above")
        return None, options
    return final, options


def forgetting_suites(extra: list[str]) -> tuple[str, ...]:
    """The demo's forgetting suites whose data is there (a data folder with only Spider and MMLU runs without)."""
    from evalkit.paths import data_dir
    from evalkit.suites import REGISTRY

    given = [arg.split("=", 1)[1] for arg in extra if arg.startswith("--data-dir=")]
    root = data_dir(given[-1] if given else None)
    present = tuple(name for name in FORGETTING if REGISTRY[name].available(root))
    if len(present) < len(FORGETTING):
        _say(f"no data for {', '.join(sorted(set(FORGETTING) - set(present)))} under {root}: the cost side is "
             "measured without it (python -m evalkit.data fetch --from ../shared/data adds it)")
    return present


def evaluate(adapter: Path, prompt: dict[str, Any], samples: dict[str, str], report_dir: Path, fresh: bool,
             extra: list[str]) -> int:
    """Base vs adapter through the plugin, with the adapter's prompt options; pytest's exit status (the
    gates decide it). ``samples``: the Spider, MMLU and forgetting-suite sample sizes."""
    if fresh and report_dir.exists():
        shutil.rmtree(report_dir)
    forgetting = forgetting_suites(extra)
    _say(f"step 2/2: evaluating base and adapter (Spider dev; {', '.join(forgetting) or 'no forgetting suite'}; "
         "MMLU cloze); a rerun reads the result cache")
    gates = [gate for gate in GATES if forgetting or not gate.startswith("forgetting.")]
    command = [sys.executable, "-m", "pytest", "tests/eval", "-q", "-p", "no:cacheprovider",
               f"--adapter={ADAPTER_NAME}={adapter}", f"--suites={','.join(('spider', *forgetting, 'mmlu'))}",
               "--mmlu-format=cloze", f"--spider-schema={prompt['schema']}",
               f"--spider-sample-rows={prompt['sample_rows']}", f"--spider-sample={samples['spider']}",
               f"--mmlu-sample={samples['mmlu']}",
               *(f"--{name.replace('_', '-')}-sample={samples['forgetting']}" for name in forgetting),
               f"--report-dir={report_dir}", *(f"--gate={gate}" for gate in gates), *extra]
    return _run(command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evalkit demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=CONFIG, help="training config of the adapter")
    parser.add_argument("--spider-sample", default=SPIDER_SAMPLE, help="Spider dev questions per hardness level, or 'all'")
    parser.add_argument("--mmlu-sample", default=MMLU_SAMPLE, help="MMLU questions per subject, or 'all'")
    parser.add_argument("--forgetting-sample", default=FORGETTING_SAMPLE,
                        help=f"questions of each forgetting suite ({', '.join(FORGETTING)}), or 'all'")
    parser.add_argument("--report-dir", type=Path, default=REPORT_DIR, help="where the report goes")
    parser.add_argument("--fresh", action="store_true", help="train the adapter again and drop the old report")
    args, extra = parser.parse_known_args(argv)
    started = time.perf_counter()
    adapter, prompt = train_if_needed(args.config.resolve(), args.fresh)
    if adapter is None:
        return 2
    trained = time.perf_counter()
    samples = {"spider": args.spider_sample, "mmlu": args.mmlu_sample, "forgetting": args.forgetting_sample}
    status = evaluate(adapter, prompt, samples, args.report_dir.resolve(), args.fresh, extra)
    done = time.perf_counter()
    _say(f"report: {args.report_dir}/tradeoff.md (the answer on top), tradeoff.json, cases.jsonl, plots")
    _say(f"took {_minutes(done - started)} (training {_minutes(trained - started)}, "
         f"evaluation {_minutes(done - trained)})")
    return status


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"
