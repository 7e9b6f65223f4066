"""MMLU cloze scoring with nested prefix reuse against no reuse, in one run: seconds and tokens.

    python benchmarks/bench_cloze.py --shots 0 --per-subject 20
    python benchmarks/bench_cloze.py --shots 5 --per-subject 20

Scores the first ``--per-subject`` test questions of three subjects (anatomy, global_facts,
high_school_biology) in the cloze format, four answer texts each, on the embedded model, once with
``share_prefix=True`` (the subject's shots once, then each question once for its four answers) and once
with ``share_prefix=False`` (every answer re-reads its whole prompt). Prints, per mode, the seconds, the
forward passes, the tokens that went through the model (padding included) and the largest difference of
a log-likelihood between the modes (float rounding only).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from evalkit.data.mmlu import load_mmlu
from evalkit.inference import choice_logprobs
from evalkit.models import load_model
from evalkit.prompts import mmlu_cloze_continuations, mmlu_cloze_kshot_prompt

SUBJECTS = ("anatomy", "global_facts", "high_school_biology")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", type=int, default=0)
    parser.add_argument("--per-subject", type=int, default=20)
    args = parser.parse_args()
    model = load_model("smollm2-135m")
    counts = {"forwards": 0, "tokens": 0}

    def count(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        counts["forwards"] += 1
        counts["tokens"] += kwargs["input_ids"].numel()

    model.model.register_forward_pre_hook(count, with_kwargs=True)
    questions = [q for s in SUBJECTS for q in load_mmlu("test", subjects=[s])[:args.per_subject]]
    prompts = [mmlu_cloze_kshot_prompt(q, shots=args.shots) for q in questions]
    choices = [mmlu_cloze_continuations(q) for q in questions]
    choice_logprobs(model, prompts[:2], choices[:2], progress=False)  # warm-up
    results = {}
    for share in (True, False):
        counts.update(forwards=0, tokens=0)
        started = time.perf_counter()
        results[share] = choice_logprobs(model, prompts, choices, share_prefix=share, progress=False)
        print(f"share_prefix={share!s:5}: {time.perf_counter() - started:6.1f} s, {counts['forwards']} forwards, "
              f"{counts['tokens']} tokens through the model ({len(questions)} questions, {args.shots}-shot)")
    diff = max(abs(a - b) for x, y in zip(results[True], results[False]) for a, b in zip(x, y))
    print(f"max |difference| of a log-likelihood: {diff:.2e}")


if __name__ == "__main__":
    main()
