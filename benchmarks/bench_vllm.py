"""vLLM backend vs the transformers engine on the embedded model, in one run: speed and agreement.

    source .venv-vllm/bin/activate                                  # bash scripts/setup_vllm_cpu.sh
    flock /tmp/tradeoff-cpu.lock python benchmarks/bench_vllm.py     # about 20 min on a 2-core CPU

Prints, for each backend (fp32; vLLM on whatever platform its build runs on):
1. load time;
2. Spider generation on the inference benchmark's 100 dev questions (5 databases, zero-shot chat prompt,
   greedy, <= 64 new tokens, stop ';'): questions/s, and agreement (identical SQL, identical execution verdicts);
3. MMLU 5-shot letter scoring (default: the 100 global_facts test questions, 400 letters): questions/s and
   agreement (max |Δ log-prob|, argmax letters), for the transformers engine (batched, shared-prefix reuse),
   the vLLM backend (next-token queries with ``logprob_token_ids``, vLLM's prefix cache) and, on the first
   few questions, the harness's way through vLLM (``prompt_logprobs`` over each context + letter).
No cache: every figure is a cold computation. ``--skip spider`` / ``--skip mmlu`` leave out a section.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import torch
from bench_inference import spider_sample, timed

from evalkit.data.mmlu import load_mmlu
from evalkit.inference import choice_logprobs, generate
from evalkit.inference.agreement import compare_generations, compare_scores
from evalkit.inference.tokens import encode_pairs
from evalkit.inference.vllm_backend import VLLMBackend
from evalkit.models import LoadedModel, load_model
from evalkit.prompts import MMLU_CONTINUATIONS, mmlu_kshot_prompt, spider_chat_prompt

LETTERS = list(MMLU_CONTINUATIONS)


def prompt_logprobs_scores(backend: VLLMBackend, prompts: list[str]) -> list[list[float]]:
    """Letter log-likelihoods the way lm-evaluation-harness's vLLM backend reads them: one request per
    context + letter with ``prompt_logprobs``, summing the continuation positions."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    pairs = [(p, letter) for p in prompts for letter in LETTERS]
    encoded = encode_pairs(backend.tokenizer, pairs)
    sequences = [context + continuation for context, continuation in encoded]
    outputs = backend.llm.generate([TokensPrompt(prompt_token_ids=s) for s in sequences],
                                   SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=1), use_tqdm=False)
    flat = []
    for (_, continuation), tokens, out in zip(encoded, sequences, outputs):
        n = len(continuation)
        flat.append(sum(entry[token].logprob for token, entry in zip(tokens[-n:], out.prompt_logprobs[-n:])))
    return [flat[i:i + len(LETTERS)] for i in range(0, len(flat), len(LETTERS))]


def row(name: str, n: int, seconds: float, extra: str = "") -> None:
    print(f"   {name:<52}{n / seconds:>8.2f} q/s{seconds:>9.1f} s  {extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spider-n", type=int, default=100, help="Spider dev questions (default 100)")
    parser.add_argument("--spider-dbs", type=int, default=5, help="databases they come from (default 5)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="Spider generation length (default 64)")
    parser.add_argument("--mmlu-subject", default="global_facts", help="MMLU subject (default global_facts)")
    parser.add_argument("--mmlu-n", type=int, default=100, help="its first N test questions (default 100)")
    parser.add_argument("--prompt-logprobs-n", type=int, default=10,
                        help="questions scored the harness's way, with prompt_logprobs (default 10; 0 skips)")
    parser.add_argument("--skip", choices=["spider", "mmlu"], action="append", default=[],
                        help="leave out a section (repeatable)")
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")

    hf, hf_load = timed(lambda: load_model("smollm2-135m"))
    vl, vl_load = timed(lambda: VLLMBackend.load("smollm2-135m", dtype="float32"))
    print(f"transformers: {hf.device}, {hf.dtype}, torch threads {torch.get_num_threads()}, loaded in {hf_load:.1f} s")
    bind = os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "auto")
    print(f"vLLM: {vl.device}, {vl.dtype}, VLLM_CPU_OMP_THREADS_BIND={bind}, loaded in {vl_load:.1f} s")

    if "spider" not in args.skip:
        bench_spider(hf, vl, args.spider_n, args.spider_dbs, args.max_new_tokens)
    if "mmlu" not in args.skip:
        bench_mmlu(hf, vl, args.mmlu_subject, args.mmlu_n, args.prompt_logprobs_n)


def bench_spider(hf: LoadedModel, vl: VLLMBackend, n: int, databases: int, max_new_tokens: int) -> None:
    examples = spider_sample(n, databases)
    prompts = [spider_chat_prompt(e, hf.tokenizer) for e in examples]
    print(f"\n1. Spider generation: {len(prompts)} dev questions on {len({e.db_id for e in examples})} databases, "
          f"greedy, max_new_tokens={max_new_tokens}, stop ';'")
    texts: dict[str, Any] = {}
    for name, backend in (("transformers (batched + prefix reuse)", hf), ("vLLM", vl)):
        texts[name], seconds = timed(lambda: generate(backend, prompts, max_new_tokens=max_new_tokens,
                                                      stop=[";"], progress=False))
        row(name, len(prompts), seconds)
    spider = compare_generations(examples, *texts.values())
    print(f"   {spider.line()}")
    for d in spider.differences:
        print(f"   {d['id']} ({d['db']}): transformers {d['first_verdict']}: {d['first']!r}\n"
              f"   {'':<{len(d['id']) + len(d['db']) + 3}} vLLM {d['second_verdict']}: {d['second']!r}")


def bench_mmlu(hf: LoadedModel, vl: VLLMBackend, subject: str, n_questions: int, n_harness: int) -> None:
    questions = load_mmlu("test", subjects=[subject])[:n_questions]
    mmlu_prompts = [mmlu_kshot_prompt(q) for q in questions]
    print(f"\n2. MMLU 5-shot scoring: {len(questions)} {subject} test questions, 4 letters each")
    hf_scores, seconds = timed(lambda: choice_logprobs(hf, mmlu_prompts, LETTERS, progress=False))
    row("transformers (batched + prefix reuse)", len(questions), seconds)
    vl_scores, seconds = timed(lambda: choice_logprobs(vl, mmlu_prompts, LETTERS, progress=False))
    row("vLLM, next-token queries (logprob_token_ids)", len(questions), seconds)
    print(f"   {compare_scores(hf_scores, vl_scores).line()}")
    n = min(n_harness, len(questions))
    if n:
        harness, seconds = timed(lambda: prompt_logprobs_scores(vl, mmlu_prompts[:n]))
        row(f"vLLM, prompt_logprobs (harness's way), first {n}", n, seconds,
            f"vs transformers: {compare_scores(hf_scores[:n], harness).line().removeprefix('MMLU: ')}")


if __name__ == "__main__":
    main()
