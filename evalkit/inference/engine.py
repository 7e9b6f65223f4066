"""The transformers backend: answer log-likelihoods with shared-prefix reuse, and greedy generation
(continuously batched, ``evalkit.inference.decoding``).

Both run on the forward helpers of ``evalkit.inference.forward``: rows (token sequences) sorted by length,
left padded, optionally after a shared prefix's KV cache.

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
from collections.abc import Iterator, Sequence
from typing import Any

from evalkit.inference.decoding import generate_batches
from evalkit.inference.forward import forward_rows, max_length, pad_id, prefix_cache, suffix_batch, vocab_size
from evalkit.inference.planning import (BatchLimits, Row, group_cost, plan_nested, release_memory, row_cost,
                                        run_adaptive, score_rows)
from evalkit.models import LoadedModel

# Part of every cache key, per kind of request: bump one when its computation changes, so a change to
# generation does not throw away cached log-likelihoods (and vice versa).
ENGINE_VERSIONS = {"generate": "hf-3",  # hf-2: own greedy loop; hf-3: continuous batching (other batch mixes)
                   "loglikelihood": "hf-1"}
RELEASE_AFTER_ROWS = 100  # a nested group this large (an MMLU subject) returns freed memory when done


# --------------------------------------------------------------------------------- log-likelihoods

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
        out, _ = forward_rows(model, rows, prefix_len, prefix_cache, keep, use_cache=False)
        return _pick_scores(out.logits, rows, keep)


def _score_groups(model: LoadedModel, groups: Sequence[tuple[int, list[Row]]], prefix_len: int,
                  prefix_cache: Any) -> list[tuple[int, float]]:
    """Score several groups of rows (each sharing its own tokens after the common ``prefix_len``, like
    the four answers of one cloze question) in two forwards: the groups' shared parts as one batch, then
    every row's remainder on a copy of its group's cache."""
    import torch

    pad = pad_id(model.tokenizer)
    rows = [row for _, members in groups for row in members]
    keep = max(r.n_scored for r in rows)
    with torch.inference_mode():
        shared = suffix_batch([members[0].tokens[prefix_len:end] for end, members in groups],
                               [prefix_len] * len(groups), torch.ones((len(groups), prefix_len)), pad, model.device)
        extra: dict[str, Any] = {}
        if prefix_cache is not None:
            extra["past_key_values"] = copy.deepcopy(prefix_cache)
            extra["past_key_values"].batch_repeat_interleave(len(groups))
        cache = model.model(**shared, use_cache=True, logits_to_keep=1, **extra).past_key_values
        owner = torch.tensor([g for g, (_, members) in enumerate(groups) for _ in members], device=model.device)
        cache.batch_select_indices(owner)
        rest = suffix_batch([row.tokens[end:] for end, members in groups for row in members],
                             [end for end, members in groups for _ in members], shared["attention_mask"][owner],
                             pad, model.device)
        out = model.model(**rest, past_key_values=cache, use_cache=True, logits_to_keep=keep)
        return _pick_scores(out.logits, rows, keep)


def _nested_batches(model: LoadedModel, rows: list[Row], prefix_len: int, cache: Any, limits: BatchLimits,
                    plan: tuple[list[tuple[int, list[Row]]], list[Row]] | None = None,
                    ) -> Iterator[list[tuple[int, float]]]:
    """Score rows that share ``prefix_len`` tokens (in ``cache``), reusing nested prefixes: rows that share
    more (the subject's shots, then the four answers of one cloze question) compute their common part once
    (:func:`plan_nested`). A group that nests further, or that is cut into several parts of several rows
    each (a subject whose questions all start differently), gets its own cache and recursion: batched as
    parts, it would recompute its common part for every part. Other groups (one question's answers; long
    questions sharing a passage, one row per part) are batched together (:func:`_score_groups`): a cache
    of their own would hold one more copy of the shared part beside each row's (docs/benchmarks.md#memory).
    Log-likelihoods only: for generation, smaller groups would mean smaller decoding batches."""
    worth, alone = plan or plan_nested(rows, prefix_len, prefix_len)
    leaves: list[tuple[int, list[Row]]] = []
    for shared, members in worth:
        inner = plan_nested(members, shared, shared)
        parts = limits.split(members)
        if inner[0] or (len(parts) > 1 and len(parts[0]) > 1):  # its own cache; a nested plan is passed down
            extended = prefix_cache(model, members[0].tokens[prefix_len:shared], cache, prefix_len)
            yield from _nested_batches(model, members, shared, extended, limits, inner)
            if len(members) >= RELEASE_AFTER_ROWS:  # a subject done: its freed caches go back to the OS
                del extended
                release_memory()
        else:
            leaves.extend((shared, part) for part in parts)
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
    limits = BatchLimits.for_device(model.device, "score", batch_size, vocab_size(model))
    if share_prefix:
        yield from _nested_batches(model, rows, 0, None, limits)
    else:
        yield from run_adaptive(sorted(rows, key=lambda r: -len(r.tokens)), row_cost, limits,
                                lambda chunk: _score_rows(model, chunk, 0, None))


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
