"""Tokenisation shared by every backend: how lm-evaluation-harness splits (context, continuation) pairs,
and where generated text is cut at a stop string."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evalkit.errors import ConfigError


def encode_all(tokenizer: Any, texts: Sequence[str]) -> dict[str, list[int]]:
    """Tokenise each distinct text once, in one batched call (a context is shared by all its choices)."""
    unique = list(dict.fromkeys(texts))
    if not unique:
        return {}
    ids = tokenizer(unique, add_special_tokens=False, return_attention_mask=False)["input_ids"]
    return dict(zip(unique, ids))


def encode_pairs(tokenizer: Any, pairs: Sequence[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
    """(context tokens, continuation tokens) for each (context, continuation), as the harness splits them."""
    split: list[tuple[str, str]] = []
    for context, continuation in pairs:
        spaces = len(context) - len(context.rstrip())
        if context and spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        split.append((context, continuation))
    encoded = encode_all(tokenizer, [c for c, _ in split if c] + [c + x if c else x for c, x in split])
    prefix_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    out = []
    for index, (context, continuation) in enumerate(split):
        if not context:
            cont = encoded[continuation]
            ctx, cont = (cont[:1], cont[1:]) if cont and cont[0] == prefix_id else ([prefix_id], cont)
        else:
            ctx = encoded[context]
            cont = encoded[context + continuation][len(ctx):]
        if not cont:
            raise ConfigError(f"Request {index}: the continuation {pairs[index][1]!r} is empty after tokenisation, "
                              "so it has no log-likelihood. Fix: pass non-empty answer choices.")
        out.append((ctx, cont))
    return out


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """The text before the earliest stop string (the stop string itself is dropped, as in the harness)."""
    cuts = [text.find(s) for s in stop if s]
    cuts = [c for c in cuts if c >= 0]
    return text[:min(cuts)] if cuts else text
