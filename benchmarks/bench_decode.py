"""Spider decoding speed: batch sizes and the reserved KV cache, or a whole dev set for one variant.

    python benchmarks/bench_decode.py compare --batches 16,48 --prompts 48 --new-tokens 96
    python benchmarks/bench_decode.py dev [--adapter runs/smollm2-135m-cpu/final]

``compare`` decodes the compact-schema prompts of dev's largest database (world_1) at each batch size,
once with the reserved KV cache and once with transformers' concatenating cache, without stop strings
(every row writes ``--new-tokens``), and checks that the texts are identical. ``dev`` times greedy
generation of every runnable dev question as the Spider suite asks it (compact schema, stop ``;``),
model load excluded, with no result cache.
"""

from __future__ import annotations

import argparse
import collections
import time

import evalkit.inference.kv_cache as kv_cache
from evalkit.data.spider import database_path, load_spider
from evalkit.inference import generate
from evalkit.models import load_model
from evalkit.prompts import spider_chat_prompt


def _compare(args: argparse.Namespace) -> None:
    model = load_model()
    by_db = collections.defaultdict(list)
    for example in load_spider("dev"):
        by_db[example.db_id].append(example)
    db = max(by_db, key=lambda name: len(by_db[name]))
    prompts = [spider_chat_prompt(ex, model.tokenizer, schema="compact") for ex in by_db[db][:args.prompts]]
    reserve = kv_cache.reserve
    for batch in (int(b) for b in args.batches.split(",")):
        texts = {}
        for cache in ("concatenating", "reserved"):
            # The engine looks the function up at each batch, so this switches the cache for the run.
            kv_cache.reserve = reserve if cache == "reserved" else (lambda _cache, _room: None)
            started = time.perf_counter()
            texts[cache] = generate(model, prompts, max_new_tokens=args.new_tokens, batch_size=batch, progress=False)
            seconds = time.perf_counter() - started
            tokens = sum(len(ids) for ids in model.tokenizer(texts[cache], add_special_tokens=False)["input_ids"])
            print(f"{db}, {len(prompts)} prompts, batch {batch}, {cache} cache: {seconds:.1f} s, "
                  f"{tokens / seconds:.0f} new tokens/s", flush=True)
        kv_cache.reserve = reserve
        print(f"batch {batch}: texts identical: {texts['concatenating'] == texts['reserved']}")


def _dev(args: argparse.Namespace) -> None:
    model = load_model(adapter=args.adapter)
    examples = [ex for ex in load_spider("dev") if database_path(ex.db_id) is not None]
    prompts = [spider_chat_prompt(ex, model.tokenizer, schema="compact") for ex in examples]
    started = time.perf_counter()
    generate(model, prompts, max_new_tokens=args.new_tokens, stop=[";"], progress="spider dev")
    print(f"{args.adapter or 'base'}: {len(prompts)} dev questions in {time.perf_counter() - started:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("compare", "dev"))
    parser.add_argument("--batches", default="16,48", help="compare: batch sizes")
    parser.add_argument("--prompts", type=int, default=48, help="compare: prompts of the database")
    parser.add_argument("--new-tokens", type=int, default=None, help="default: 96 (compare), 128 (dev)")
    parser.add_argument("--adapter", default=None, help="dev: a LoRA adapter folder (default: the base model)")
    args = parser.parse_args()
    args.new_tokens = args.new_tokens or (96 if args.mode == "compare" else 128)
    (_compare if args.mode == "compare" else _dev)(args)


if __name__ == "__main__":
    main()
