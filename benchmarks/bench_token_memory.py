"""Peak memory of turning a full MMLU run's requests into model inputs (tokenisation and rows), no model.

    python benchmarks/bench_token_memory.py --format letters --shots 5
    python benchmarks/bench_token_memory.py --format cloze --shots 0

Builds the engine's rows for all 14,042 test questions exactly as ``choice_logprobs`` does (chunked
tokenisation, int32 rows, identical inputs merged) and prints the process's resident memory before and
after and its peak (``VmHWM``), so a change to the token path shows its cost without an hour of inference.
"""

from __future__ import annotations

import argparse
import os
import time

from evalkit.data.mmlu import load_mmlu
from evalkit.inference.planning import score_rows
from evalkit.models.resolve import load_tokenizer, resolve_base
from evalkit.prompts import MMLU_CONTINUATIONS, mmlu_cloze_continuations, mmlu_cloze_kshot_prompt, mmlu_kshot_prompt


def memory() -> str:
    with open(f"/proc/{os.getpid()}/status") as status:
        fields = dict(line.split(":", 1) for line in status if line.startswith(("VmRSS", "VmHWM")))
    return f"RSS {int(fields['VmRSS'].split()[0]) / 1024:.0f} MB, peak {int(fields['VmHWM'].split()[0]) / 1024:.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", choices=("letters", "cloze"), default="letters")
    parser.add_argument("--shots", type=int, default=5)
    args = parser.parse_args()
    tokenizer = load_tokenizer(resolve_base("smollm2-135m")[0])
    questions = load_mmlu("test")
    if args.format == "letters":
        pairs = [(mmlu_kshot_prompt(q, shots=args.shots), c) for q in questions for c in MMLU_CONTINUATIONS]
    else:
        pairs = [(mmlu_cloze_kshot_prompt(q, shots=args.shots), c) for q in questions
                 for c in mmlu_cloze_continuations(q)]
    print(f"{len(questions)} questions, {len(pairs)} requests ({args.format}, {args.shots}-shot); before: {memory()}")
    started = time.perf_counter()
    rows = score_rows(tokenizer, pairs, 8192)
    tokens = sum(len(row.tokens) for row in rows)
    print(f"{len(rows)} rows, {tokens} tokens, {time.perf_counter() - started:.0f} s; after: {memory()}")


if __name__ == "__main__":
    main()
