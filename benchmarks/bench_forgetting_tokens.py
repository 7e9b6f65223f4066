"""Tokens the forgetting suites ask for against tokens the model computes (prefix reuse at work).

For each suite, a sample of questions (seed 0) is scored through ``choice_logprobs`` exactly as a run
does; a hook on the model's forward counts the positions it computes (padding included, and apart) and
the time. "Requested" is what a harness without reuse computes: every (context, continuation) request
tokenised whole, as lm-evaluation-harness feeds them.

    python benchmarks/bench_forgetting_tokens.py --sample 100
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from evalkit.inference import choice_logprobs
from evalkit.models import load_model
from evalkit.paths import data_dir
from evalkit.sampling import stratified
from evalkit.suites import FAMILIES, REGISTRY


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", default="100", help="questions per suite, or 'all'")
    parser.add_argument("--suites", default=",".join(FAMILIES["forgetting"]))
    args = parser.parse_args()
    model = load_model("smollm2-135m")
    counted = {"positions": 0, "real": 0}
    forward = model.model.forward

    def counting(*a: Any, **kw: Any) -> Any:
        ids = kw.get("input_ids", a[0] if a else None)
        mask = kw.get("attention_mask")
        if ids is not None:
            counted["positions"] += int(ids.numel())
            counted["real"] += int(mask[:, -ids.shape[1]:].sum()) if mask is not None else int(ids.numel())
        return forward(*a, **kw)

    model.model.forward = counting
    print("| suite | questions | requests | tokens requested | positions computed (real) | ratio | seconds |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.suites.split(","):
        suite = REGISTRY[name]({"sample": args.sample}, data_dir())
        examples = stratified(suite.load(), suite.sample, 0)
        pairs = [pair for example in examples for pair in suite.requests(example, suite.prompt(example, None))]
        requested = sum(len(model.tokenizer(context + continuation)["input_ids"]) for context, continuation in pairs)
        counted.update(positions=0, real=0)
        started = time.perf_counter()
        choice_logprobs(model, [c for c, _ in pairs], [[x] for _, x in pairs], progress=False)
        seconds = time.perf_counter() - started
        print(f"| {name} | {len(examples)} | {len(pairs)} | {requested} | {counted['positions']} ({counted['real']}) | "
              f"{requested / max(1, counted['real']):.2f}x | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
