"""How fast the inference engine runs the two suites on the embedded model, and what a full evaluation costs.

    flock /tmp/tradeoff-cpu.lock python benchmarks/bench_inference.py                 # the full run (long on CPU)
    python benchmarks/bench_inference.py --mmlu-per-subject 2 --spider-n 16         # a quick look

Prints, side by side:
1. MMLU 5-shot scoring, questions/s, on the same questions (the first N test questions of every subject):
   naive (one full forward per question, batch 1, as the seed notebooks and lm-evaluation-harness's HF
   backend do) vs batched vs batched + shared-prefix reuse, with their largest log-prob difference.
2. Spider generation (zero-shot chat prompt, greedy), questions/s and new tokens/s: one at a time vs
   batched vs batched + shared-prefix reuse (one database's system prompt + schema), on N dev questions
   from a few databases spread over dev.
3. The same batched runs again on a warm cache.
4. The projected wall time of a full evaluation (base + one adapter; all of Spider dev and MMLU test).
   MMLU is projected by tokens (prompt lengths differ a lot between subjects: professional_law is long
   and has 1534 questions), Spider by question count (a full run has ~50 questions per database to share
   a schema prefix, the sample ~20, so this errs long).
Targets (issue 5): prefix reuse >= 3x naive, batched generation >= 3x one at a time, warm cache >= 50x.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from evalkit.data.mmlu import SUBJECTS, load_mmlu
from evalkit.data.spider import load_spider
from evalkit.inference import ResultCache, choice_logprobs, generate
from evalkit.inference.engine import max_length
from evalkit.inference.planning import plan_prefix_groups, score_rows
from evalkit.metrics.mmlu_accuracy import argmax
from evalkit.models import LoadedModel, load_model
from evalkit.prompts import mmlu_kshot_prompt, spider_chat_prompt

LETTERS = [" A", " B", " C", " D"]
TARGETS = {"prefix": 3.0, "generation": 3.0, "warm": 50.0}


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def spread(items: list[str], n: int) -> list[str]:
    """``n`` items evenly spaced over ``items`` (all of them when n >= len(items))."""
    n = max(1, min(n, len(items)))
    return [items[round(i * (len(items) - 1) / max(n - 1, 1))] for i in range(n)] if n > 1 else items[:1]


def computed_tokens(model: LoadedModel, prompts: list[str], share_prefix: bool) -> int:
    """Tokens the engine runs through the model for these prompts (each shared prefix counted once)."""
    rows = score_rows(model.tokenizer, [(p, " A") for p in prompts], max_length(model))
    groups = plan_prefix_groups(rows) if share_prefix else [(0, rows)]
    return sum(prefix + sum(len(r.tokens) - prefix for r in members) for prefix, members in groups)


def bench_mmlu(model: LoadedModel, per_subject: int, subjects: list[str], naive: bool, cache_dir: Path) -> dict[str, float]:
    questions = [q for s in subjects for q in load_mmlu("test", subjects=[s])[:per_subject]]
    prompts = [mmlu_kshot_prompt(q) for q in questions]
    n = len(prompts)
    print(f"\n1. MMLU 5-shot scoring: {n} questions ({per_subject} per subject x {len(subjects)} subjects), "
          f"{computed_tokens(model, prompts, False) / n:.0f} prompt tokens on average")
    runs: dict[str, tuple[list[list[float]], float]] = {}
    if naive:
        runs["naive (batch 1, full prompt)"] = timed(lambda: choice_logprobs(
            model, prompts, LETTERS, batch_size=1, share_prefix=False, progress="naive"))
    runs["batched (auto), full prompt"] = timed(lambda: choice_logprobs(
        model, prompts, LETTERS, share_prefix=False, progress="batched"))
    cache = ResultCache(cache_dir / "mmlu.sqlite")
    runs["batched + prefix reuse"] = timed(lambda: choice_logprobs(model, prompts, LETTERS, cache=cache,
                                                                    progress="batched+prefix"))
    warm, warm_s = timed(lambda: choice_logprobs(model, prompts, LETTERS, cache=cache, progress=False))
    baseline_name = next(iter(runs))
    baseline, baseline_s = runs[baseline_name]
    print(f"   {'method':<32}{'q/s':>8}{'time':>10}{'speed-up':>10}{'max |dlogp|':>13}{'same argmax':>13}")
    for name, (values, seconds) in runs.items():
        diff = max(abs(a - b) for x, y in zip(values, baseline) for a, b in zip(x, y))
        same = sum(argmax(x) == argmax(y) for x, y in zip(values, baseline))
        print(f"   {name:<32}{n / seconds:>8.2f}{seconds:>9.1f}s{baseline_s / seconds:>9.1f}x{diff:>13.1e}{same:>9}/{n}")
    prefix_s = runs["batched + prefix reuse"][1]
    assert warm == runs["batched + prefix reuse"][0]
    print(f"   {'warm cache rerun':<32}{n / warm_s:>8.0f}{warm_s:>9.2f}s{prefix_s / warm_s:>9.0f}x (vs cold prefix run)")
    if naive:
        verdict = "meets" if baseline_s / prefix_s >= TARGETS["prefix"] else "MISSES"
        print(f"   prefix reuse vs naive: {baseline_s / prefix_s:.1f}x, {verdict} the {TARGETS['prefix']:.0f}x target")
    return {
        "prefix_tokens_per_s": computed_tokens(model, prompts, True) / prefix_s,
        "naive_tokens_per_s": computed_tokens(model, prompts, False) / baseline_s if naive else 0.0,
        "warm_speedup": prefix_s / warm_s,
    }


def spider_sample(n: int, databases: int) -> list[Any]:
    """``n`` executable dev questions: consecutive questions of ``databases`` databases spread evenly over dev.

    Consecutive, because a full run meets each database's questions together (dev is grouped by database)
    and shares their schema prefix; spread, so that schema sizes are not only those of the first databases.
    """
    dev = [e for e in load_spider("dev") if e.db_path is not None]
    per_db = -(-n // databases)
    by_db: dict[str, list[Any]] = {}
    for example in dev:
        by_db.setdefault(example.db_id, []).append(example)
    chosen = spread([db for db, examples in by_db.items() if len(examples) >= per_db], databases)
    return [e for db in chosen for e in by_db[db][:per_db]][:n]


def bench_spider(model: LoadedModel, n: int, databases: int, max_new_tokens: int, stop: list[str],
                 cache_dir: Path) -> dict[str, float]:
    examples = spider_sample(n, databases)
    prompts = [spider_chat_prompt(e, model.tokenizer) for e in examples]
    tok = model.tokenizer
    mean_len = sum(len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts) / len(prompts)
    print(f"\n2. Spider generation: {len(prompts)} dev questions on {len(set(e.db_id for e in examples))} databases, "
          f"{mean_len:.0f} prompt tokens on average, greedy, max_new_tokens={max_new_tokens}, stop={stop}")
    settings = {"one at a time": {"batch_size": 1, "share_prefix": False},
                "batched (auto)": {"share_prefix": False},
                "batched + prefix reuse": {}}
    cache = ResultCache(cache_dir / "spider.sqlite")
    runs = {name: timed(lambda: generate(model, prompts, max_new_tokens=max_new_tokens, stop=stop, progress=name,
                                         cache=cache if not kw else None, **kw))
            for name, kw in settings.items()}
    warm, warm_s = timed(lambda: generate(model, prompts, max_new_tokens=max_new_tokens, stop=stop, cache=cache,
                                          progress=False))
    single, single_s = runs["one at a time"]
    best, best_s = runs["batched + prefix reuse"]
    assert warm == best
    new_tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in best)
    print(f"   {'method':<32}{'q/s':>8}{'new tok/s':>11}{'time':>10}{'speed-up':>10}{'same text':>11}")
    for name, (texts, seconds) in runs.items():
        same = sum(a == b for a, b in zip(single, texts))
        print(f"   {name:<32}{len(prompts) / seconds:>8.2f}{new_tokens / seconds:>11.1f}{seconds:>9.1f}s"
              f"{single_s / seconds:>9.1f}x{same:>7}/{len(prompts)}")
    print(f"   {'warm cache rerun':<32}{len(prompts) / warm_s:>8.0f}{'':>11}{warm_s:>9.2f}s"
          f"{best_s / warm_s:>9.0f}x (vs cold batched + prefix run)")
    print(f"   {new_tokens / len(prompts):.1f} new tokens per answer (returned text, stop string excluded)")
    verdict = "meets" if single_s / best_s >= TARGETS["generation"] else "MISSES"
    print(f"   batched vs one at a time: {single_s / best_s:.1f}x, {verdict} the {TARGETS['generation']:.0f}x target")
    return {"seconds_per_question": best_s / len(prompts), "warm_speedup": best_s / warm_s}


def project(model: LoadedModel, mmlu: dict[str, float] | None, spider: dict[str, float] | None) -> None:
    print("\n4. Projected full evaluation, base + one adapter (2 models), on this machine:")
    total = 0.0
    if mmlu:
        prompts = [mmlu_kshot_prompt(q) for q in load_mmlu("test")]
        shared, full = computed_tokens(model, prompts, True), computed_tokens(model, prompts, False)
        seconds = 2 * shared / mmlu["prefix_tokens_per_s"]
        total += seconds
        print(f"   MMLU test, {len(prompts)} questions 5-shot: {full / 1e6:.2f} M prompt tokens, {shared / 1e6:.2f} M "
              f"after prefix reuse -> {seconds / 3600:.2f} h")
        if mmlu["naive_tokens_per_s"]:
            print(f"   (the naive way: {2 * full / mmlu['naive_tokens_per_s'] / 3600:.1f} h)")
    if spider:
        n = len([e for e in load_spider("dev") if e.db_path is not None])
        seconds = 2 * n * spider["seconds_per_question"]
        total += seconds
        print(f"   Spider dev, {n} executable questions: {seconds / 3600:.2f} h")
    if mmlu and spider:
        print(f"   total: {total / 3600:.2f} h (cold cache; a rerun of unchanged models is served from the cache)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mmlu-per-subject", type=int, default=10, help="test questions per subject (default 10)")
    parser.add_argument("--subjects", type=int, default=len(SUBJECTS),
                        help="use N subjects spread evenly over the alphabetical list (default all 57)")
    parser.add_argument("--spider-n", type=int, default=100, help="Spider dev questions (default 100)")
    parser.add_argument("--spider-dbs", type=int, default=5, help="databases they come from (default 5)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="Spider generation length (default 64)")
    parser.add_argument("--stop", action="append", default=None, help="Spider stop string (default ';')")
    parser.add_argument("--skip", choices=["mmlu", "spider", "naive"], action="append", default=[],
                        help="leave out a section (repeatable); 'naive' drops the slowest MMLU baseline")
    parser.add_argument("--model", default="smollm2-135m", help="model spec (default: the embedded model)")
    args = parser.parse_args()
    model, load_s = timed(lambda: load_model(args.model))
    print(f"model {args.model} on {model.device}, {model.model.dtype}, torch threads {torch.get_num_threads()}, "
          f"loaded in {load_s:.1f} s")
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        mmlu = None if "mmlu" in args.skip else bench_mmlu(
            model, args.mmlu_per_subject, spread(list(SUBJECTS), args.subjects), "naive" not in args.skip, Path(tmp))
        spider = None if "spider" in args.skip else bench_spider(
            model, args.spider_n, args.spider_dbs, args.max_new_tokens, args.stop or [";"], Path(tmp))
    warm = [r["warm_speedup"] for r in (mmlu, spider) if r]
    if warm:
        verdict = "meets" if min(warm) >= TARGETS["warm"] else "MISSES"
        print(f"\n3. Warm cache: {min(warm):.0f}x faster than cold at worst; {verdict} the {TARGETS['warm']:.0f}x target")
    project(model, mmlu, spider)


if __name__ == "__main__":
    main()
