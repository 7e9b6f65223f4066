"""The inference engine on the real embedded model and real MMLU / Spider prompts.

Equivalence (prefix reuse == full computation == the harness's algorithm), batched == one at a time,
stop strings, the warm cache, and a SIGKILLed run that resumes from its cache.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from evalkit.data.mmlu import load_mmlu
from evalkit.data.spider import load_spider
from evalkit.inference import ResultCache, choice_logprobs, generate
from evalkit.models import attention
from evalkit.inference import planning
from evalkit.inference.planning import build_rows, plan_prefix_groups
from evalkit.inference import kv_cache
from evalkit.inference.kv_cache import ReservedLayer, reserve
from evalkit.inference.tokens import encode_pairs
from evalkit.models import LoadedModel
from evalkit.prompts import mmlu_cloze_kshot_prompt, mmlu_kshot_prompt, spider_chat_prompt

pytestmark = pytest.mark.model
LETTERS = [" A", " B", " C", " D"]
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _mmlu_prompts(subjects: list[str], per_subject: int, shots: int) -> list[str]:
    return [mmlu_kshot_prompt(q, shots=shots) for s in subjects for q in load_mmlu("test", subjects=[s])[:per_subject]]


def _harness_loglikelihood(model: LoadedModel, context: str, continuation: str) -> float:
    """lm-evaluation-harness's HF ``loglikelihood`` for one request, written out step by step, unbatched."""
    tok = model.tokenizer
    spaces = len(context) - len(context.rstrip())
    if context and spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    if context:
        ctx = tok(context, add_special_tokens=False)["input_ids"]
        cont = tok(context + continuation, add_special_tokens=False)["input_ids"][len(ctx):]
    else:
        ctx, cont = [tok.bos_token_id], tok(continuation, add_special_tokens=False)["input_ids"]
    inp = torch.tensor([(ctx + cont)[:-1]])
    with torch.no_grad():
        logprobs = torch.log_softmax(model.model(inp).logits[0].float(), dim=-1)
    first = inp.shape[1] - len(cont)
    return sum(float(logprobs[first + k, token]) for k, token in enumerate(cont))


def test_tokenisation_matches_the_harness_split(embedded_model: LoadedModel) -> None:
    tok = embedded_model.tokenizer
    (ctx, cont), (ctx2, cont2), (ctx3, cont3) = encode_pairs(
        tok, [("Q?\nAnswer:", " A"), ("Q?\nAnswer: ", "A"), ("", "Hello")]
    )
    assert cont == [tok.convert_tokens_to_ids("ĠA")] == tok(" A", add_special_tokens=False)["input_ids"]
    assert (ctx, cont) == (ctx2, cont2)  # the trailing space moves to the continuation
    assert ctx3 == [tok.bos_token_id] and cont3 == tok("Hello", add_special_tokens=False)["input_ids"]
    assert tok.bos_token_id not in ctx  # no BOS prepended to a non-empty context (harness add_bos_token=False)


def test_scores_equal_the_harness_computation(embedded_model: LoadedModel) -> None:
    mmlu = _mmlu_prompts(["astronomy"], 1, shots=1)[0]
    cases = [(mmlu, " C"), ("The capital of France is ", "Paris"), ("", "Hello world"),
             ("SELECT name FROM singer", " WHERE age > 30 ORDER BY name;")]
    got = choice_logprobs(embedded_model, [c for c, _ in cases], [[x] for _, x in cases], progress=False)
    for (context, continuation), [value] in zip(cases, got):
        assert value == pytest.approx(_harness_loglikelihood(embedded_model, context, continuation), abs=1e-4)
    assert got[3][0] < got[1][0] < 0  # a 12-token continuation is far less likely than one word


def test_prefix_reuse_equals_full_computation_on_real_mmlu_prompts(embedded_model: LoadedModel) -> None:
    prompts = _mmlu_prompts(["abstract_algebra", "anatomy"], 3, shots=5)
    rows = build_rows(encode_pairs(embedded_model.tokenizer, [(p, " A") for p in prompts]), 8192)
    groups = plan_prefix_groups(rows)
    assert sorted(len(members) for prefix, members in groups if prefix) == [3, 3]
    assert min(prefix for prefix, _ in groups) > 250  # header + five solved questions
    full = choice_logprobs(embedded_model, prompts, LETTERS, batch_size=1, share_prefix=False, progress=False)
    shared = choice_logprobs(embedded_model, prompts, LETTERS, progress=False)
    batched = choice_logprobs(embedded_model, prompts, LETTERS, share_prefix=False, progress=False)
    diff_shared = max(abs(a - b) for x, y in zip(full, shared) for a, b in zip(x, y))
    diff_batched = max(abs(a - b) for x, y in zip(full, batched) for a, b in zip(x, y))
    assert diff_shared < 1e-4 and diff_batched < 1e-4, (diff_shared, diff_batched)
    assert all(-20 < v < 0 for row in full for v in row)


def _shapes_of_exact_forwards(model: LoadedModel, prompts: list[str]) -> list[tuple[int, int]]:
    """The (rows, tokens) of each forward that scoring the letters of ``prompts`` ran, checked to give the
    full computation's scores."""
    shapes: list[tuple[int, int]] = []
    hook = model.model.register_forward_pre_hook(
        lambda _m, _a, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)
    try:
        shared = choice_logprobs(model, prompts, LETTERS, progress=False)
    finally:
        hook.remove()
    full = choice_logprobs(model, prompts, LETTERS, batch_size=1, share_prefix=False, progress=False)
    assert max(abs(a - b) for x, y in zip(full, shared) for a, b in zip(x, y)) < 1e-4
    return shapes


def test_a_group_of_alike_questions_runs_in_parts_within_the_limits(embedded_model: LoadedModel,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """global_facts' "As of 2019, about what percentage..." questions share their stem after the shots: the
    group they form must be cut to the batch limits (whole, such groups took 4 GB), with the same scores."""
    monkeypatch.setitem(planning.AUTO_LIMITS, ("cpu", "score"), (8, 1200, 128 << 20))  # two 5-shot rows
    shapes = _shapes_of_exact_forwards(embedded_model, _mmlu_prompts(["global_facts"], 20, shots=5))
    assert max(rows for rows, _ in shapes) <= 2, shapes


@pytest.mark.parametrize("rows_per_part, shots_runs", [(2, 1), (1, 8)])
def test_a_subject_too_large_for_one_forward_runs_its_shots_once(embedded_model: LoadedModel,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 rows_per_part: int, shots_runs: int) -> None:
    """management's questions all start differently after the shots, so nothing nests inside the subject.
    Cut into parts of several rows, it computes its five shots once, not per part; in parts of one row each
    it does not get a cache of its own (that held one more copy of the shared part beside each row's)."""
    prompts = _mmlu_prompts(["management"], 8, shots=5)
    rows = build_rows(encode_pairs(embedded_model.tokenizer, [(p, " A") for p in prompts]), 8192)
    ((shots, members),) = [g for g in plan_prefix_groups(rows) if g[0]]
    assert len(members) == 8 and not planning.plan_nested(members, shots, shots)[0]  # no question nests
    widest = max(len(r.tokens) for r in members)
    monkeypatch.setitem(planning.AUTO_LIMITS, ("cpu", "score"), (8, rows_per_part * widest, 128 << 20))
    shapes = _shapes_of_exact_forwards(embedded_model, prompts)
    assert sum(length >= shots for _, length in shapes) == shots_runs, (shots, shapes)


@pytest.mark.parametrize("shots", [0, 5])
def test_nested_prefix_reuse_equals_full_computation_on_cloze_prompts(embedded_model: LoadedModel, shots: int) -> None:
    """Cloze: the four answer texts of a question share the whole prompt (nested in the subject's shots)."""
    questions = [q for s in ("abstract_algebra", "anatomy") for q in load_mmlu("test", subjects=[s])[:3]]
    prompts = [mmlu_cloze_kshot_prompt(q, shots=shots) for q in questions]
    choices = [[" " + c for c in q.choices] for q in questions]
    full = choice_logprobs(embedded_model, prompts, choices, batch_size=1, share_prefix=False, progress=False)
    shared = choice_logprobs(embedded_model, prompts, choices, progress=False)
    diff = max(abs(a - b) for x, y in zip(full, shared) for a, b in zip(x, y))
    assert diff < 1e-4, diff
    assert all(v < 0 for row in full for v in row)


@pytest.fixture(scope="module")
def spider_prompts(embedded_model: LoadedModel) -> list[str]:
    return [spider_chat_prompt(ex, embedded_model.tokenizer) for ex in load_spider("dev")[:4]]


def test_generation_batched_equals_one_at_a_time_and_stops(embedded_model: LoadedModel,
                                                           spider_prompts: list[str]) -> None:
    # Different lengths in one batch: left padding must not change any row.
    # Two questions on one database (they share system prompt + schema) and a short unrelated prompt.
    prompts = [spider_prompts[0], spider_prompts[2],
               "<|im_start|>user\nName one planet.<|im_end|>\n<|im_start|>assistant\n"]
    batched = generate(embedded_model, prompts, max_new_tokens=32, progress=False)
    single = generate(embedded_model, prompts, max_new_tokens=32, batch_size=1, share_prefix=False, progress=False)
    assert batched == single  # deterministic, whatever the batch composition and the shared schema prefix
    assert all(text and "<|im_end|>" not in text for text in batched)
    assert batched[1].startswith("SELECT")  # the model writes SQL for this Spider question
    stopped = generate(embedded_model, prompts, max_new_tokens=32, stop=[";", "."], progress=False)
    for full, cut in zip(batched, stopped):
        assert ";" not in cut and "." not in cut
        assert cut == full.split(";")[0].split(".")[0]
    assert sum(len(cut) < len(full) for full, cut in zip(batched, stopped)) >= 2


def _dev_prompts(model: LoadedModel, per_database: dict[str, int]) -> list[str]:
    """The first questions of each named dev database, as the Spider suite asks them."""
    examples = load_spider("dev")
    return [spider_chat_prompt(ex, model.tokenizer) for db, count in per_database.items()
            for ex in [e for e in examples if e.db_id == db][:count]]


def test_continuous_batching_gives_the_one_at_a_time_texts(embedded_model: LoadedModel,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Questions of three databases through a 3-row batch: each row that finishes makes room for the next
    question, which joins the running batch (after another database's prefix too); every text is the text
    the question gets alone."""
    prompts = _dev_prompts(embedded_model, {"concert_singer": 3, "pets_1": 3, "car_1": 2})
    joined: list[int] = []
    join = kv_cache.join
    monkeypatch.setattr(kv_cache, "join", lambda parts, room: joined.append(len(parts)) or join(parts, room))
    continuous = generate(embedded_model, prompts, max_new_tokens=24, stop=[";"], batch_size=3, progress=False)
    into_running = sum(parts > 1 for parts in joined)
    single = generate(embedded_model, prompts, max_new_tokens=24, stop=[";"], batch_size=1, share_prefix=False,
                      progress=False)
    assert continuous == single
    assert into_running >= 3  # questions joined a batch that was still decoding
    assert len({len(text) for text in single}) > 3  # rows finished at different steps


def test_sliding_window_caches_decode_batch_by_batch_with_the_same_texts(embedded_model: LoadedModel,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A model with sliding-window layers (Mistral, Gemma) gets caches that keep only their last positions,
    which cannot be joined: its prompts decode one batch at a time. The embedded model given a window wider
    than any prompt takes that path with real sliding-window caches and must write the texts it writes
    with continuous batching."""
    prompts = _dev_prompts(embedded_model, {"concert_singer": 2, "pets_1": 2, "car_1": 2})  # 3 rows fit two databases
    continuous = generate(embedded_model, prompts, max_new_tokens=24, stop=[";"], batch_size=3, progress=False)
    monkeypatch.setattr(embedded_model.model.config, "sliding_window", 4096, raising=False)
    assert not kv_cache.joinable(embedded_model.model.config)
    joined: list[int] = []
    reserved: list[set[str]] = []
    join, reserve_room = kv_cache.join, kv_cache.reserve
    monkeypatch.setattr(kv_cache, "join", lambda parts, room: joined.append(len(parts)) or join(parts, room))
    monkeypatch.setattr(kv_cache, "reserve", lambda cache, room: reserved.append(
        {type(layer).__name__ for layer in cache.layers}) or reserve_room(cache, room))
    windowed = generate(embedded_model, prompts, max_new_tokens=24, stop=[";"], batch_size=3, progress=False)
    assert windowed == continuous
    assert not joined and len(reserved) >= 2  # batch after batch, never joined
    assert reserved[0] == {"DynamicSlidingWindowLayer"}  # kept as they are, not given reserved buffers


def test_out_of_memory_while_decoding_halves_the_batch_and_keeps_what_finished(
        embedded_model: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    prompts = _dev_prompts(embedded_model, {"concert_singer": 3, "pets_1": 3})
    expected = generate(embedded_model, prompts, max_new_tokens=16, batch_size=4, progress=False)
    forward, failures = embedded_model.model.forward, []

    def fails_once_on_a_wide_step(*args: object, **kwargs: torch.Tensor) -> object:
        ids = kwargs["input_ids"]
        if ids.shape[1] == 1 and ids.shape[0] > 2 and not failures:  # a decoding step of 3+ rows
            failures.append(ids.shape[0])
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(*args, **kwargs)

    monkeypatch.setattr(embedded_model.model, "forward", fails_once_on_a_wide_step)
    assert generate(embedded_model, prompts, max_new_tokens=16, batch_size=4, progress=False) == expected
    assert failures  # the failure happened, and the run went on with smaller batches


def test_cpu_attention_equals_transformers_sdpa(embedded_model: LoadedModel, spider_prompts: list[str]) -> None:
    """The KV-copy-free grouped-query attention (the CPU default) gives sdpa's results on padded batches."""
    config = embedded_model.model.config
    assert config._attn_implementation == attention.NAME
    # The function itself, on the model's real attention layer: a left-padded prefill and a decoding step.
    layer, dim = embedded_model.model.model.layers[0].self_attn, config.hidden_size // config.num_attention_heads
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(2, config.num_attention_heads, 5, dim, generator=generator)
    key, value = (torch.randn(2, config.num_key_value_heads, 7, dim, generator=generator) for _ in range(2))
    mask = torch.ones(2, 1, 5, 7, dtype=torch.bool).tril(diagonal=2)
    mask[0, :, :, :2] = False  # row 0 is left padded by two positions
    for q, m in ((query, mask), (query[:, :, -1:], mask[:, :, -1:])):
        ours = attention.gqa_sdpa_attention(layer, q, key, value, m, scaling=dim ** -0.5)[0]
        theirs = sdpa_attention_forward(layer, q, key, value, m, scaling=dim ** -0.5)[0]
        assert ours.shape == theirs.shape and torch.allclose(ours, theirs, atol=1e-5)
    # And the whole engine, on padded batches of real prompts.
    mmlu = _mmlu_prompts(["anatomy", "virology"], 2, shots=5)

    def run() -> tuple[list[list[float]], list[str]]:
        scores = choice_logprobs(embedded_model, mmlu, LETTERS, share_prefix=False, progress=False)
        return scores, generate(embedded_model, spider_prompts, max_new_tokens=24, progress=False)

    ours, ours_text = run()
    embedded_model.model.set_attn_implementation("sdpa")
    try:
        theirs, theirs_text = run()
    finally:
        embedded_model.model.set_attn_implementation(attention.NAME)
    assert max(abs(a - b) for x, y in zip(ours, theirs) for a, b in zip(x, y)) < 1e-4
    assert ours_text == theirs_text


def test_warm_cache_serves_everything_and_keys_on_the_model(embedded_model: LoadedModel, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="evalkit.inference")
    cache = ResultCache(tmp_path / "results.sqlite")
    prompts = _mmlu_prompts(["virology"], 3, shots=0)
    cold = choice_logprobs(embedded_model, prompts + prompts[:1], LETTERS, cache=cache, progress=False)
    assert "16 requests, 12 distinct, 0 from cache, 12 to compute" in caplog.text
    caplog.clear()
    warm = choice_logprobs(embedded_model, prompts + prompts[:1], LETTERS, cache=cache, progress=False)
    assert warm == cold and "12 from cache, 0 to compute" in caplog.text
    # Another adapter is another model: nothing is served from the base model's entries.
    other = dataclasses.replace(embedded_model, adapter_fingerprint="0123456789abcdef")
    caplog.clear()
    choice_logprobs(other, prompts[:1], LETTERS, cache=cache, progress=False)
    assert "0 from cache, 4 to compute" in caplog.text
    caplog.clear()
    generate(embedded_model, prompts[:1], max_new_tokens=4, cache=cache, progress=False)
    generate(embedded_model, prompts[:1], max_new_tokens=5, cache=cache, progress=False)
    assert caplog.text.count("0 from cache, 1 to compute") == 2  # decoding parameters are part of the key


CHILD = """
import json, sys
from evalkit.inference import ResultCache, generate
from evalkit.models import load_model
prompts = json.load(open(sys.argv[1]))
generate(load_model(), prompts, max_new_tokens=8, batch_size=1, cache=ResultCache(sys.argv[2]), progress=False)
print("finished")
"""


def test_killed_run_resumes_from_its_cache(embedded_model: LoadedModel, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    prompts = _mmlu_prompts(["high_school_geography"], 8, shots=0)
    (tmp_path / "prompts.json").write_text(json.dumps(prompts))
    path = tmp_path / "results.sqlite"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "prompts.json"), str(path)],
                             cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    deadline = time.monotonic() + 120
    done = 0
    while done < 2:
        assert child.poll() is None, f"child ended before being killed: {child.communicate()}"
        assert time.monotonic() < deadline, "child wrote no results in 120 s"
        time.sleep(0.05)
        if path.exists():
            with ResultCache(path) as probe:
                done = len(probe)
    child.send_signal(signal.SIGKILL)
    child.communicate()
    assert child.returncode == -signal.SIGKILL
    with ResultCache(path) as probe:
        done = len(probe)
    assert 2 <= done < len(prompts), done

    caplog.set_level(logging.INFO, logger="evalkit.inference")
    resumed = generate(embedded_model, prompts, max_new_tokens=8, batch_size=1, cache=ResultCache(path),
                       progress=False)
    assert f"{done} from cache, {len(prompts) - done} to compute" in caplog.text
    fresh = generate(embedded_model, prompts, max_new_tokens=8, batch_size=1, progress=False)
    assert resumed == fresh


def test_reserved_kv_cache_decodes_as_the_growing_cache(embedded_model: LoadedModel, spider_prompts: list[str]) -> None:
    """Decoding into reserved buffers gives the logits of transformers' concatenating cache, through a row
    leaving the batch and through the reserved room running out (the buffers then grow)."""
    model = embedded_model.model
    encoded = [embedded_model.tokenizer(p, add_special_tokens=False)["input_ids"][-200:] for p in spider_prompts[:3]]
    width = max(map(len, encoded))
    ids = torch.tensor([[0] * (width - len(row)) + row for row in encoded])
    mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in encoded])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        growing = out.past_key_values
        reserved = copy.deepcopy(growing)
        reserve(reserved, 3)
        assert all(isinstance(layer, ReservedLayer) for layer in reserved.layers)
        tokens, positions = out.logits[:, -1].argmax(-1), positions[:, -1:] + 1
        for step in range(6):
            if step == 2:  # the middle row finishes
                keep = torch.tensor([0, 2])
                growing.batch_select_indices(keep)
                reserved.batch_select_indices(keep)
                mask, positions, tokens = mask[keep], positions[keep], tokens[keep]
            mask = torch.cat([mask, mask.new_ones((len(mask), 1))], dim=1)
            logits = [model(input_ids=tokens[:, None], attention_mask=mask, position_ids=positions,
                            past_key_values=cache, use_cache=True).logits[:, -1] for cache in (growing, reserved)]
            assert torch.allclose(logits[0], logits[1], atol=1e-5)
            assert reserved.get_seq_length() == growing.get_seq_length() == width + step + 1
            tokens, positions = logits[0].argmax(-1), positions + 1
    assert reserved.layers[0]._key_buffer.shape[-2] > width + 3  # the room ran out and the buffers grew
