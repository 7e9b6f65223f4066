"""Grouped-query attention without copying the KV cache: the CPU attention used for evaluation.

SmolLM2 (like Llama, Qwen and Mistral) has fewer key/value heads than query heads (3 and 9). Whenever an
attention mask is present (left padding, a shared prefix, every decoding step of a batch) transformers'
``sdpa`` path calls ``repeat_kv``, which copies the whole key and value cache ``groups`` times, in every
layer, at every step. On a CPU that copy is most of the cost of batched decoding (docs/benchmarks.md has
the measured effect).

The same attention is computed by folding each key/value head's query heads into the query length,
``(batch, kv_heads, groups * q_len, dim)``, and repeating the (small) mask instead of the (large) cache.
Every score is the same dot product as before; only the kernel's blocking differs (log-likelihoods agree
to float rounding, tested against ``sdpa``). Without a mask (a single unpadded sequence) there is
nothing to copy and the stock ``sdpa`` path runs.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "evalkit_gqa_sdpa"


def gqa_sdpa_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
                       scaling: float | None = None, is_causal: bool | None = None, **kwargs: Any) -> tuple[Any, None]:
    """transformers attention interface: ``query (b, heads, q, d)``, ``key/value (b, kv_heads, k, d)``,
    ``attention_mask (b, 1, q, k)`` boolean or additive, or None; returns ``(b, q, heads, d)``."""
    if attention_mask is None or attention_mask.shape[1] != 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    batch, heads, q_len, dim = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    folded = query.reshape(batch, kv_heads, groups * q_len, dim)  # head h = kv * groups + g  ->  row g * q_len + t
    mask = attention_mask  # (b, 1, q, k): one row per query position, the same for every group
    if q_len > 1:
        rows, keys = mask.shape[0], mask.shape[-1]
        mask = mask.unsqueeze(2).expand(rows, 1, groups, q_len, keys).reshape(rows, 1, groups * q_len, keys)
    out = torch.nn.functional.scaled_dot_product_attention(folded, key, value, attn_mask=mask,
                                                           dropout_p=dropout, scale=scaling)
    return out.reshape(batch, heads, q_len, dim).transpose(1, 2).contiguous(), None


def register() -> str:
    """Make :data:`NAME` a valid ``attn_implementation`` (with sdpa's mask format); idempotent."""
    AttentionInterface.register(NAME, gqa_sdpa_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME
