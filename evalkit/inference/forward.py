"""The forward passes that scoring and decoding share: left-padded suffixes after a shared prefix's KV cache.

A row is a token sequence (:class:`~evalkit.inference.planning.Row`). Rows that share a long token prefix
(one subject's shots, one database's schema) run it once into a KV cache (:func:`prefix_cache`); each batch
then runs only the rows' suffixes, left padded, on a copy of that cache (:func:`forward_rows`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

from evalkit.inference.planning import Row
from evalkit.models import LoadedModel


def max_length(model: LoadedModel) -> int:
    """The model's context window (the harness's 2048 when the config declares none)."""
    config = getattr(model.model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048


def vocab_size(model: LoadedModel) -> int:
    """The width of one position's logits."""
    return getattr(getattr(model.model, "config", None), "vocab_size", None) or len(model.tokenizer)


def pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def suffix_batch(suffixes: Sequence[Sequence[int]], starts: Sequence[int], past_mask: Any, pad: int,
                 device: str) -> dict[str, Any]:
    """Left-padded suffixes after a cached past: the attention mask over (past, padding, suffix), where
    ``past_mask`` says which cached positions are real, and each suffix's true positions from its start."""
    import torch

    width = max(len(s) for s in suffixes)
    ids = torch.full((len(suffixes), width), pad, dtype=torch.long)
    own = torch.zeros((len(suffixes), width), dtype=torch.long)
    positions = torch.tensor(starts, dtype=torch.long).unsqueeze(1).repeat(1, width)
    for b, (suffix, start) in enumerate(zip(suffixes, starts)):
        offset = width - len(suffix)
        ids[b, offset:] = torch.as_tensor(np.asarray(suffix), dtype=torch.long)
        own[b, offset:] = 1
        positions[b, offset:] = torch.arange(start, start + len(suffix))
    mask = torch.cat([past_mask.to(torch.long).cpu(), own], dim=1)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "position_ids": positions.to(device)}


def forward_rows(model: LoadedModel, rows: Sequence[Row], prefix_len: int, prefix: Any, keep: int,
                 use_cache: bool) -> tuple[Any, dict[str, Any]]:
    """One forward over the rows' suffixes (after a copy of the shared prefix's KV cache ``prefix``, if
    any), keeping the logits of the last ``keep`` positions. Returns the model output and the batch it ran on."""
    import torch

    batch = suffix_batch([r.tokens[prefix_len:] for r in rows], [prefix_len] * len(rows),
                         torch.ones((len(rows), prefix_len)), pad_id(model.tokenizer), model.device)
    extra: dict[str, Any] = {"use_cache": use_cache or prefix is not None}
    if prefix is not None:
        cache = copy.deepcopy(prefix)
        cache.batch_repeat_interleave(len(rows))
        extra["past_key_values"] = cache
    return model.model(**batch, logits_to_keep=keep, **extra), batch


def prefix_cache(model: LoadedModel, tokens: Sequence[int], parent: Any = None, start: int = 0) -> Any:
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
