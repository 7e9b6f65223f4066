"""The transformers backend: batched greedy generation and answer log-likelihoods with shared-prefix reuse.

Both run on one forward helper: rows (token sequences) sorted by length, left padded, optionally after a
shared prefix's KV cache. Generation is our own greedy loop rather than ``model.generate``: ``generate``
adds per-step overhead around the bare forward (docs/benchmarks.md), it cannot start from a shared prefix
cache, and it keeps finished rows in the batch; here a row leaves the batch (and the
KV cache) the moment it emits EOS or a stop string.

Log-likelihoods follow lm-evaluation-harness's ``loglikelihood`` for causal HF models token for token:

- trailing whitespace of the context moves to the front of the continuation (``"Answer: "`` + ``"A"`` is
  scored as ``"Answer:"`` + ``" A"``);
- context and context+continuation are tokenised separately **without special tokens** (the harness's
  default ``add_bos_token=False``; SmolLM2's tokenizer adds none anyway), and the continuation is
  ``encode(context + continuation)[len(encode(context)):]``, so a merge across the boundary is charged to
  the continuation exactly as in the harness;
- an empty context is replaced by the BOS token (EOS when there is none), unless the continuation
  already starts with it;
- the model input is ``(context + continuation)[-(max_len + 1):][:-1]``: left truncation as the harness does;
- the score is the sum over continuation tokens of ``log_softmax`` of the logits at the preceding positions.
  We take ``log_softmax`` in fp32 even when the model runs in bf16/fp16 (the harness uses the model dtype);
  on the CPU default (fp32) the two are the same.

Speed comes from three things, none of which changes a result beyond float rounding (< 1e-4):

- requests whose model input is identical (one context with four one-token letters) share one row;
- rows are sorted by length and batched with left padding and ``logits_to_keep`` (only the last positions
  reach the LM head, which on a 49k vocabulary is most of the memory);
- rows that share a long common *token* prefix (the 5-shot MMLU prompts of one subject: header + five
  solved questions; the Spider prompts of one database: system prompt + schema) are grouped; the prefix
  runs once into a KV cache and only each row's suffix runs on a copy of it. We split at the longest common token prefix of the full tokenisations, never at a text
  boundary, because tokenising the prefix and the suffix separately changes the boundary tokens.
  For log-likelihoods the prefixes nest: within a subject's shots, the four answer texts of one cloze
  question share the question, which runs once too, and many questions' shared parts run as one batch
  (1.4-1.5x faster on 0- and 5-shot cloze than subject-level sharing alone; docs/benchmarks.md).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from evalkit.errors import ConfigError
from evalkit.inference.planning import (BatchLimits, Cost, Row, group_cost, plan_nested, plan_prefix_groups, release_memory,
                                        row_cost, row_for, run_adaptive, score_rows)
from evalkit.inference.tokens import cut_at_stop, encode_all
from evalkit.models import LoadedModel

R = TypeVar("R")

# Part of every cache key, per kind of request: bump one when its computation changes, so a change to
# generation does not throw away cached log-likelihoods (and vice versa).
ENGINE_VERSIONS = {"generate": "hf-2",  # hf-2: own greedy loop instead of model.generate
                   "loglikelihood": "hf-1"}
RELEASE_AFTER_ROWS = 100  # a nested group this large (an MMLU subject) returns freed memory when done


# --------------------------------------------------------------------------------- log-likelihoods

def max_length(model: LoadedModel) -> int:
    config = getattr(model.model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048  # the harness's default when the model declares nothing


def _vocab_size(model: LoadedModel) -> int:
    """The width of one position's logits."""
    return getattr(getattr(model.model, "config", None), "vocab_size", None) or len(model.tokenizer)


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _suffix_batch(suffixes: Sequence[Sequence[int]], starts: Sequence[int], past_mask: Any, pad_id: int,
                  device: str) -> dict[str, Any]:
    """Left-padded suffixes after a cached past: the attention mask over (past, padding, suffix), where
    ``past_mask`` says which cached positions are real, and each suffix's true positions from its start."""
    import torch

    width = max(len(s) for s in suffixes)
    ids = torch.full((len(suffixes), width), pad_id, dtype=torch.long)
    own = torch.zeros((len(suffixes), width), dtype=torch.long)
    positions = torch.tensor(starts, dtype=torch.long).unsqueeze(1).repeat(1, width)
    for b, (suffix, start) in enumerate(zip(suffixes, starts)):
        offset = width - len(suffix)
        ids[b, offset:] = torch.as_tensor(np.asarray(suffix), dtype=torch.long)
        own[b, offset:] = 1
        positions[b, offset:] = torch.arange(start, start + len(suffix))
    mask = torch.cat([past_mask.to(torch.long).cpu(), own], dim=1)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "position_ids": positions.to(device)}


def _forward_rows(model: LoadedModel, rows: Sequence[Row], prefix_len: int, prefix_cache: Any, keep: int,
                  use_cache: bool) -> tuple[Any, dict[str, Any]]:
    """One forward over the rows' suffixes (after a copy of the shared prefix's KV cache, if any), keeping
    the logits of the last ``keep`` positions. Returns the model output and the batch it ran on."""
    import torch

    batch = _suffix_batch([r.tokens[prefix_len:] for r in rows], [prefix_len] * len(rows),
                          torch.ones((len(rows), prefix_len)), _pad_id(model.tokenizer), model.device)
    extra: dict[str, Any] = {"use_cache": use_cache or prefix_cache is not None}
    if prefix_cache is not None:
        cache = copy.deepcopy(prefix_cache)
        cache.batch_repeat_interleave(len(rows))
        extra["past_key_values"] = cache
    return model.model(**batch, logits_to_keep=keep, **extra), batch


def _pick_scores(logits: Any, rows: Sequence[Row], keep: int) -> list[tuple[int, float]]:
    """Each target's summed log-probability, read from the last ``keep`` positions' logits of its row.
    ``log_softmax`` runs row by row on the row's own positions: over the whole batch it would copy every
    kept logit, padding positions of shorter continuations included."""
    import torch

    scores = []
    for b, row in enumerate(rows):
        scored = torch.log_softmax(logits[b, keep - row.n_scored:].float(), dim=-1)
        for index, cont in row.targets:
            picked = scored.gather(1, torch.tensor(cont, device=scored.device).unsqueeze(1))
            scores.append((index, float(picked.sum())))
    return scores


def _score_rows(model: LoadedModel, rows: list[Row], prefix_len: int, prefix_cache: Any) -> list[tuple[int, float]]:
    import torch

    keep = max(r.n_scored for r in rows)
    with torch.inference_mode():
        out, _ = _forward_rows(model, rows, prefix_len, prefix_cache, keep, use_cache=False)
        return _pick_scores(out.logits, rows, keep)


def _score_groups(model: LoadedModel, groups: Sequence[tuple[int, list[Row]]], prefix_len: int,
                  prefix_cache: Any) -> list[tuple[int, float]]:
    """Score several groups of rows (each sharing its own tokens after the common ``prefix_len``, like
    the four answers of one cloze question) in two forwards: the groups' shared parts as one batch, then
    every row's remainder on a copy of its group's cache."""
    import torch

    pad = _pad_id(model.tokenizer)
    rows = [row for _, members in groups for row in members]
    keep = max(r.n_scored for r in rows)
    with torch.inference_mode():
        shared = _suffix_batch([members[0].tokens[prefix_len:end] for end, members in groups],
                               [prefix_len] * len(groups), torch.ones((len(groups), prefix_len)), pad, model.device)
        extra: dict[str, Any] = {}
        if prefix_cache is not None:
            extra["past_key_values"] = copy.deepcopy(prefix_cache)
            extra["past_key_values"].batch_repeat_interleave(len(groups))
        cache = model.model(**shared, use_cache=True, logits_to_keep=1, **extra).past_key_values
        owner = torch.tensor([g for g, (_, members) in enumerate(groups) for _ in members], device=model.device)
        cache.batch_select_indices(owner)
        rest = _suffix_batch([row.tokens[end:] for end, members in groups for row in members],
                             [end for end, members in groups for _ in members], shared["attention_mask"][owner],
                             pad, model.device)
        out = model.model(**rest, past_key_values=cache, use_cache=True, logits_to_keep=keep)
        return _pick_scores(out.logits, rows, keep)


def _prefix_cache(model: LoadedModel, tokens: Sequence[int], parent: Any = None, start: int = 0) -> Any:
    """The KV cache of ``tokens``, run after a copy of ``parent`` (the cache of the first ``start`` tokens)."""
    import torch

    with torch.inference_mode():
        ids = torch.as_tensor(np.asarray(tokens), dtype=torch.long, device=model.device).unsqueeze(0)
        extra: dict[str, Any] = {}
        if parent is not None:
            extra = {"past_key_values": copy.deepcopy(parent),
                     "attention_mask": torch.ones((1, start + len(tokens)), dtype=torch.long, device=model.device),
                     "position_ids": torch.arange(start, start + len(tokens), device=model.device).unsqueeze(0)}
        return model.model(input_ids=ids, use_cache=True, logits_to_keep=1, **extra).past_key_values


def _grouped_batches(model: LoadedModel, rows: list[Row], share_prefix: bool, limits: BatchLimits, extra_cost: int,
                     run: Callable[[list[Row], int, Any], R]) -> Iterator[R]:
    """Run ``rows`` in batches, each prefix group on its prefix's KV cache (computed once per group).
    Memory grows with the whole (prefix + suffix) length, so that is the batching cost."""
    for prefix_len, members in plan_prefix_groups(rows) if share_prefix else [(0, rows)]:
        members = sorted(members, key=lambda r: -len(r.tokens))
        cache = _prefix_cache(model, members[0].tokens[:prefix_len]) if prefix_len else None
        yield from run_adaptive(members, lambda r: Cost(len(r.tokens) + extra_cost), limits,
                                lambda chunk: run(chunk, prefix_len, cache))
        release_memory()  # one database's prompts done: freed batches go back to the OS


def _nested_batches(model: LoadedModel, rows: list[Row], prefix_len: int, cache: Any, limits: BatchLimits,
                    plan: tuple[list[tuple[int, list[Row]]], list[Row]] | None = None,
                    ) -> Iterator[list[tuple[int, float]]]:
    """Score rows that share ``prefix_len`` tokens (in ``cache``), reusing nested prefixes: rows that share
    more (the subject's shots, then the four answers of one cloze question) compute their common part once
    (:func:`plan_nested`). A group that nests further gets its own cache and recursion; groups that do
    not (one question's answers) are batched together (:func:`_score_groups`). Log-likelihoods only: for
    generation, smaller groups would mean smaller decoding batches."""
    worth, alone = plan or plan_nested(rows, prefix_len, prefix_len)
    leaves: list[tuple[int, list[Row]]] = []
    for shared, members in worth:
        inner = plan_nested(members, shared, shared)
        if inner[0]:  # the group nests further: its plan is passed down, not made twice
            extended = _prefix_cache(model, members[0].tokens[prefix_len:shared], cache, prefix_len)
            yield from _nested_batches(model, members, shared, extended, limits, inner)
            if len(members) >= RELEASE_AFTER_ROWS:  # a subject done: its freed caches go back to the OS
                del extended
                release_memory()
        else:
            leaves.extend((shared, part) for part in limits.split(members))
    # A leaf group costs the padded length of all its rows (their KV caches are copies); the row limit
    # counts groups here, so a batch holds up to four times as many rows as a plain batch on CPU.
    leaves.sort(key=lambda g: -group_cost(g[1]).tokens)
    yield from run_adaptive(leaves, lambda g: group_cost(g[1]), limits,
                            lambda chunk: _score_groups(model, chunk, prefix_len, cache))
    alone.sort(key=lambda r: -len(r.tokens))
    yield from run_adaptive(alone, row_cost, limits, lambda chunk: _score_rows(model, chunk, prefix_len, cache))


def loglikelihood_batches(model: LoadedModel, pairs: Sequence[tuple[str, str]], *, batch_size: int | None = None,
                          share_prefix: bool = True) -> Iterator[list[tuple[int, float]]]:
    """Yield ``[(pair index, log-likelihood), ...]`` batch by batch, longest inputs first."""
    rows = score_rows(model.tokenizer, pairs, max_length(model))
    limits = BatchLimits.for_device(model.device, "score", batch_size, _vocab_size(model))
    if share_prefix:
        yield from _nested_batches(model, rows, 0, None, limits)
    else:
        yield from run_adaptive(sorted(rows, key=lambda r: -len(r.tokens)), row_cost, limits,
                                lambda chunk: _score_rows(model, chunk, 0, None))


# -------------------------------------------------------------------------------------- generation


def _eos_ids(model: LoadedModel) -> set[int]:
    """The tokenizer's EOS and the generation config's (a list for some models)."""
    ids = {model.tokenizer.eos_token_id}
    configured = getattr(getattr(model.model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return {i for i in ids if i is not None}


def _decode_rows(model: LoadedModel, rows: list[Row], prefix_len: int, prefix_cache: Any, *, max_new_tokens: int,
                 stop: Sequence[str], eos: set[int]) -> list[tuple[int, str]]:
    """Greedy decoding of a batch. A row leaves the batch (and its KV cache) as soon as it emits EOS or its
    text contains a stop string, so the remaining rows stop paying for it."""
    import torch

    from evalkit.inference.kv_cache import reserve

    tokenizer = model.tokenizer
    texts = [""] * len(rows)
    with torch.inference_mode():
        out, batch = _forward_rows(model, rows, prefix_len, prefix_cache, 1, use_cache=True)
        cache, prompt_mask = out.past_key_values, batch["attention_mask"]
        reserve(cache, max_new_tokens)
        length = prompt_mask.shape[1]
        full_mask = torch.cat([prompt_mask, prompt_mask.new_ones((len(rows), max_new_tokens))], dim=1)
        positions = batch["position_ids"][:, -1:] + 1
        active = list(range(len(rows)))
        generated: list[list[int]] = [[] for _ in rows]
        next_tokens = out.logits[:, -1].argmax(dim=-1)
        for step in range(max_new_tokens):
            keep = []
            for slot, (row, token) in enumerate(zip(active, next_tokens.tolist())):
                done = token in eos
                if not done:
                    generated[row].append(token)
                    text = tokenizer.decode(generated[row], skip_special_tokens=True, clean_up_tokenization_spaces=False)
                    done = step + 1 == max_new_tokens or any(s in text for s in stop if s)
                    texts[row] = text
                if not done:
                    keep.append(slot)
            if not keep:
                break
            if len(keep) < len(active):
                index = torch.tensor(keep, device=full_mask.device)
                cache.batch_select_indices(index)
                full_mask, positions, next_tokens = full_mask[index], positions[index], next_tokens[index]
                active = [active[slot] for slot in keep]
            length += 1
            out = model.model(input_ids=next_tokens.unsqueeze(1), attention_mask=full_mask[:, :length],
                              position_ids=positions, past_key_values=cache, use_cache=True)
            positions = positions + 1
            next_tokens = out.logits[:, -1].argmax(dim=-1)
    return [(index, cut_at_stop(texts[b], stop)) for b, row in enumerate(rows) for index, _ in row.targets]


def generate_batches(model: LoadedModel, prompts: Sequence[str], *, max_new_tokens: int, stop: Sequence[str] = (),
                     batch_size: int | None = None, share_prefix: bool = True) -> Iterator[list[tuple[int, str]]]:
    """Yield ``[(prompt index, new text), ...]`` batch by batch: greedy, longest prompts first, left padded.

    Prompts are tokenised without special tokens (chat prompts already carry theirs; as the harness's
    ``generate_until``); a prompt longer than the model's window minus ``max_new_tokens`` keeps its end.
    Prompts sharing a long token prefix (the system prompt and schema of one Spider database) prefill it once.
    """
    window = max_length(model) - max_new_tokens
    if window < 1:
        raise ConfigError(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in the model's "
                          f"{max_length(model)}-token window. Fix: lower max_new_tokens.")
    encoded = encode_all(model.tokenizer, prompts)
    rows: dict[bytes, Row] = {}
    for index, prompt in enumerate(prompts):
        row_for(encoded[prompt][-window:], 1, rows).targets.append((index, ()))
    limits = BatchLimits.for_device(model.device, "generate", batch_size, _vocab_size(model))
    eos = _eos_ids(model)
    yield from _grouped_batches(
        model, list(rows.values()), share_prefix, limits, max_new_tokens,
        lambda chunk, prefix_len, cache: _decode_rows(model, chunk, prefix_len, cache, max_new_tokens=max_new_tokens,
                                                      stop=stop, eos=eos),
    )


class HFBackend:
    """The transformers backend for one :class:`~evalkit.models.LoadedModel` (the inference protocol)."""

    engine_versions = ENGINE_VERSIONS

    def __init__(self, model: LoadedModel) -> None:
        self.loaded = model
        self.tokenizer = model.tokenizer

    def model_key(self) -> str:
        """What identifies this model's results: weights + adapter, dtype, quantisation, backend."""
        return f"hf:{self.loaded.fingerprint}:{self.loaded.dtype}:{self.loaded.quantization or 'none'}"

    def describe(self) -> dict[str, Any]:
        return self.loaded.describe()

    def generate_batches(self, prompts: Sequence[str], **options: Any) -> Iterator[list[tuple[int, str]]]:
        return generate_batches(self.loaded, prompts, **options)

    def loglikelihood_batches(self, pairs: Sequence[tuple[str, str]], **options: Any) -> Iterator[list[tuple[int, float]]]:
        return loglikelihood_batches(self.loaded, pairs, **options)
