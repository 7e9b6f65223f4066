"""Time lm-evaluation-harness and tradeoff on the same MMLU questions, back to back, end to end.

Each tool runs as a user runs it, in its own process, start-up and model load included: the harness's
``lm_eval`` CLI (HF backend, fp32 unless ``--dtype``, its default batch size unless ``--lmeval-batch-size``) on task YAMLs
that ``lmeval_agreement.py prepare`` writes from the local CSVs (it cannot reach the hub here), and
``pytest tests/eval --suites=mmlu`` with a fresh, empty result cache. Then the per-question agreement
(``lmeval_agreement.py compare``) and the ratio of the two wall times.

    python benchmarks/bench_lmeval.py --lmeval-python /path/to/lmeval-venv/bin/python \
        --subjects global_facts --shots 5 --format letters

lm-evaluation-harness is never a dependency of this project: give the Python of its own virtual
environment (docs/benchmarks.md, "Agreement with lm-evaluation-harness", shows how to make one).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lmeval_agreement import compare, prepare

from evalkit.models import materialise_embedded

ROOT = Path(__file__).resolve().parents[1]


def _timed(command: list[str], log: Path, ok: tuple[int, ...]) -> float:
    """Run ``command`` from the project root with its output in ``log``; return the wall seconds."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
    seconds = time.perf_counter() - start
    if code not in ok:
        sys.exit(f"{command[0]} {' '.join(command[1:4])} ... exited {code}; its output is in {log}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lmeval-python", type=Path, required=True,
                        help="the Python of a virtual environment with lm-evaluation-harness installed")
    parser.add_argument("--subjects", default="global_facts")
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--format", choices=("letters", "cloze"), default="letters")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="the dtype both tools run in (bf16 is fast only on CPUs with native bf16)")
    parser.add_argument("--lmeval-batch-size", default=None, help="the harness's --batch_size (default: its own, 1)")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="bench-lmeval-"))
    for stale in ("lmeval", "tradeoff", "cache"):
        shutil.rmtree(out / stale, ignore_errors=True)
    subjects = [s for s in args.subjects.split(",") if s]
    prepare(subjects, out, args.data_dir, args.format)
    model = materialise_embedded()  # both tools read the same converted folder; converting it is not timed

    ours = _timed([sys.executable, "-m", "pytest", "tests/eval", "-q", "-p", "no:cacheprovider", "--suites=mmlu",
                   f"--mmlu-format={args.format}", f"--mmlu-shots={args.shots}", "--mmlu-sample=all",
                   f"--mmlu-subjects={','.join(subjects)}", f"--results-cache={out / 'cache'}",
                   f"--report-dir={out / 'tradeoff'}", f"--dtype={args.dtype}"]
                  + ([f"--data-dir={args.data_dir}"] if args.data_dir else []),
                  out / "tradeoff.log", ok=(0, 1))  # 1: some answers were wrong, which fails their tests
    batch = ["--batch_size", args.lmeval_batch_size] if args.lmeval_batch_size else []
    theirs = _timed([str(args.lmeval_python), "-m", "lm_eval", "--model", "hf",
                     "--model_args", f"pretrained={model},dtype={args.dtype}", "--include_path", str(out / "tasks"),
                     "--tasks", f"tradeoff_{args.format}", "--num_fewshot", str(args.shots), "--device", "cpu",
                     "--log_samples", "--output_path", str(out / "lmeval"), *batch],
                    out / "lmeval.log", ok=(0,))

    agreement = compare(out, args.data_dir, args.shots, args.format)
    print(f"{agreement['compared']} questions, {args.format}, {args.shots}-shot, {args.dtype}, subjects {args.subjects}: "
          f"lm-evaluation-harness {theirs:.1f} s, tradeoff {ours:.1f} s, **{theirs / ours:.1f}x** "
          f"(logs and outputs in {out})")


if __name__ == "__main__":
    main()
