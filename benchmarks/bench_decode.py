"""Spider decoding speed: continuous batching against one batch at a time, or a whole dev set for one variant.

    python benchmarks/bench_decode.py compare [--databases concert_singer,pets_1,poker_player,orchestra]
    python benchmarks/bench_decode.py dev [--adapter runs/smollm2-135m-cpu/final] [--schema create] [--dtype bfloat16]

``compare`` decodes the dev questions of the given databases as the Spider suite asks them (compact
schema, stop ``;``, 128 new tokens), alternately one batch at a time (what a model whose KV caches cannot
be joined gets, and what every model got before) and continuously batched (finished rows make room for
the next prompts), one after the other in one process, and checks that the texts are identical. ``dev`` times
greedy generation of every runnable dev question as the Spider suite asks it, model load excluded, with
no result cache.
"""

from __future__ import annotations

import argparse
import time

from evalkit.inference import kv_cache
from evalkit.data.spider import database_path, load_spider
from evalkit.inference import generate
from evalkit.models import DTYPES, load_model
from evalkit.prompts import spider_chat_prompt


def _compare(args: argparse.Namespace) -> None:
    model = load_model()
    wanted = args.databases.split(",")
    prompts = [spider_chat_prompt(ex, model.tokenizer, schema="compact") for ex in load_spider("dev")
               if ex.db_id in wanted and database_path(ex.db_id) is not None]
    joinable = kv_cache.joinable
    texts: dict[str, list[str]] = {}
    for mode in ("one batch at a time", "continuous"):
        # The decoder asks at each call whether caches can be joined, so this switches the mode for the run.
        kv_cache.joinable = joinable if mode == "continuous" else (lambda _config: False)
        started = time.perf_counter()
        texts[mode] = generate(model, prompts, max_new_tokens=128, stop=[";"], progress=False)
        print(f"{len(prompts)} questions of {len(wanted)} databases, {mode}: {time.perf_counter() - started:.1f} s",
              flush=True)
    kv_cache.joinable = joinable
    print(f"texts identical: {texts['one batch at a time'] == texts['continuous']}")


def _dev(args: argparse.Namespace) -> None:
    model = load_model(adapter=args.adapter, dtype=args.dtype)
    examples = [ex for ex in load_spider("dev") if database_path(ex.db_id) is not None]
    prompts = [spider_chat_prompt(ex, model.tokenizer, schema=args.schema) for ex in examples]
    started = time.perf_counter()
    generate(model, prompts, max_new_tokens=128, stop=[";"], progress="spider dev")
    print(f"{args.adapter or 'base'}, {args.schema} schema, {model.describe()['dtype']}: {len(prompts)} dev questions in "
          f"{time.perf_counter() - started:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("compare", "dev"))
    parser.add_argument("--databases", default="concert_singer,pets_1,poker_player,orchestra",
                        help="compare: dev databases whose questions are decoded")
    parser.add_argument("--schema", default="compact", choices=("compact", "create"), help="dev: schema form (the suite default is create)")
    parser.add_argument("--adapter", default=None, help="dev: a LoRA adapter folder (default: the base model)")
    parser.add_argument("--dtype", default="auto", choices=DTYPES, help="dev: the dtype to run in")
    args = parser.parse_args()
    (_compare if args.mode == "compare" else _dev)(args)


if __name__ == "__main__":
    main()
