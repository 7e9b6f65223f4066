"""bf16 against fp32 on this machine, in one run: per-question agreement and speed (issue: dtype auto).

    python benchmarks/bench_dtype.py --mmlu-per-subject 2 --spider-n 24

Prints, for MMLU letters (5-shot), MMLU cloze (0-shot; acc and acc_norm) and Spider generation (zero-shot
chat prompt, greedy): the share of questions whose prediction (argmax letter, execution verdict) is the
same in bf16 as in fp32, the largest log-likelihood difference, and the seconds each dtype took. Whether
this CPU computes bf16 natively (``cpu_has_native_bf16``) is printed first: elsewhere bf16 is emulated and
slow, so the speed says nothing about other CPUs, but the agreement (numerics) does. This agreement is
why ``--dtype auto`` is fp32 on CPU (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from evalkit.data.mmlu import SUBJECTS, load_mmlu
from evalkit.inference import choice_logprobs, generate
from evalkit.metrics.mmlu_accuracy import argmax
from evalkit.models import cpu_has_native_bf16, load_model
from evalkit.prompts import (
    MMLU_CONTINUATIONS,
    mmlu_cloze_continuations,
    mmlu_cloze_kshot_prompt,
    mmlu_kshot_prompt,
)
from evalkit.paths import data_dir
from evalkit.suites.spider import SpiderSuite


def timed(work: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mmlu-per-subject", type=int, default=2)
    parser.add_argument("--subjects", type=int, default=10, help="the first N subjects")
    parser.add_argument("--spider-n", type=int, default=24)
    args = parser.parse_args()
    print(f"native bf16 on this CPU: {cpu_has_native_bf16()}")
    questions = [q for s in SUBJECTS[:args.subjects] for q in load_mmlu("test", subjects=[s])[:args.mmlu_per_subject]]
    letters = [mmlu_kshot_prompt(q) for q in questions]
    cloze = [mmlu_cloze_kshot_prompt(q, shots=0) for q in questions]
    cloze_choices = [mmlu_cloze_continuations(q) for q in questions]
    lengths = [[len(c) for c in q.choices] for q in questions]
    suite = SpiderSuite({"sample": "all"}, data_dir())
    spider = [e for e in suite.load() if not e.skip_reason][::40][:args.spider_n]
    results: dict[str, dict[str, Any]] = {}
    for dtype in ("float32", "bfloat16"):
        model = load_model(dtype=dtype)
        out: dict[str, Any] = {}
        out["letters"], out["letters_s"] = timed(lambda: choice_logprobs(model, letters, MMLU_CONTINUATIONS, progress=False))
        out["cloze"], out["cloze_s"] = timed(lambda: choice_logprobs(model, cloze, cloze_choices, progress=False))
        prompts = [suite.prompt(e, model.tokenizer) for e in spider]
        texts, out["spider_s"] = timed(lambda: generate(model, prompts, max_new_tokens=128, stop=[";"], progress=False))
        out["spider"] = [suite.score(e, p, t).fields["outcome"] for e, p, t in zip(spider, prompts, texts)]
        out["sql"] = texts
        results[dtype] = out
    fp32, bf16 = results["float32"], results["bfloat16"]

    def agreement(name: str, pick: Callable[[list[float], int], int]) -> str:
        same = sum(pick(a, i) == pick(b, i) for i, (a, b) in enumerate(zip(fp32[name], bf16[name])))
        worst = max(abs(x - y) for a, b in zip(fp32[name], bf16[name]) for x, y in zip(a, b))
        return f"{same}/{len(questions)} same argmax ({100 * same / len(questions):.1f}%), max |Δ ll| {worst:.3f}"

    print(f"MMLU letters 5-shot, {len(questions)} questions: {agreement('letters', lambda row, i: argmax(row))}; "
          f"fp32 {fp32['letters_s']:.1f} s, bf16 {bf16['letters_s']:.1f} s")
    print(f"MMLU cloze 0-shot acc: {agreement('cloze', lambda row, i: argmax(row))}")
    print(f"MMLU cloze 0-shot acc_norm: "
          f"{agreement('cloze', lambda row, i: argmax([x / n for x, n in zip(row, lengths[i])]))}; "
          f"fp32 {fp32['cloze_s']:.1f} s, bf16 {bf16['cloze_s']:.1f} s")
    same = sum(a == b for a, b in zip(fp32["spider"], bf16["spider"]))
    same_sql = sum(a == b for a, b in zip(fp32["sql"], bf16["sql"]))
    print(f"Spider {len(spider)} questions: {same}/{len(spider)} same verdict ({100 * same / len(spider):.1f}%), "
          f"{same_sql} identical SQL; fp32 {fp32['spider_s']:.1f} s, bf16 {bf16['spider_s']:.1f} s")


if __name__ == "__main__":
    main()
