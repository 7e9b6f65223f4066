"""A decoding KV cache with its room reserved, whose rows can be joined with other caches' rows.

transformers' ``DynamicLayer`` appends a step's keys and values with ``torch.cat``, which copies the
layer's whole cache at every step: for a batch decoding ``s`` tokens after an ``n``-token prompt that is
``s * (n + s/2)`` positions moved per layer where ``s`` suffice. :class:`ReservedLayer` keeps keys and
values in buffers sized for the prompt plus the tokens still to come and exposes the filled part as a
view, so attention reads exactly the tensors it read before (same values, same shapes).

:func:`join` puts the rows of several caches into one, each right-aligned at the longest one's length
(the positions before a shorter row hold zeros, which its attention mask hides), so rows of different
prompts, even after different shared prefixes, decode as one batch (``evalkit.inference.decoding``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer


class ReservedLayer(DynamicLayer):
    """A :class:`DynamicLayer` whose ``keys``/``values`` are views of larger buffers filled in place."""

    def __init__(self, key_buffer: torch.Tensor, value_buffer: torch.Tensor, length: int) -> None:
        super().__init__()
        self.dtype, self.device, self.is_initialized = key_buffer.dtype, key_buffer.device, True
        self._key_buffer, self._value_buffer = key_buffer, value_buffer
        self._expose(length)

    @classmethod
    def holding(cls, parts: Sequence[tuple[torch.Tensor, torch.Tensor]], length: int, room: int) -> ReservedLayer:
        """A layer holding the rows of ``parts`` (keys, values), each part's positions ending at ``length``,
        with ``room`` positions after (written before they are exposed). Positions before a shorter part are
        zeros: finite, so a masked position contributes nothing (uninitialised memory could hold NaN, and
        0 x NaN is NaN)."""
        keys = parts[0][0]
        rows = sum(k.shape[0] for k, _ in parts)
        key_buffer = keys.new_empty((rows, keys.shape[1], length + room, keys.shape[-1]))
        value_buffer = keys.new_empty((rows, parts[0][1].shape[1], length + room, parts[0][1].shape[-1]))
        first = 0
        for part_keys, part_values in parts:
            count, filled = part_keys.shape[0], part_keys.shape[-2]
            for buffer, part in ((key_buffer, part_keys), (value_buffer, part_values)):
                buffer[first:first + count, :, :length - filled] = 0
                buffer[first:first + count, :, length - filled:length] = part
            first += count
        return cls(key_buffer, value_buffer, length)

    def _expose(self, length: int) -> None:
        self.keys, self.values = self._key_buffer[:, :, :length], self._value_buffer[:, :, :length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new positions after the filled ones (growing the buffers only if the room runs out)."""
        start, count = self.keys.shape[-2], key_states.shape[-2]
        if start + count > self._key_buffer.shape[-2]:
            grown = ReservedLayer.holding([(self.keys, self.values)], start, start + 2 * count)
            self._key_buffer, self._value_buffer = grown._key_buffer, grown._value_buffer
        self._key_buffer[:, :, start:start + count] = key_states
        self._value_buffer[:, :, start:start + count] = value_states
        self._expose(start + count)
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep only the rows ``indices`` (a row that finished decoding leaves the buffers too). When the
        rows that stay keep their slots and only fill holes from beyond the kept count (:func:`compaction`),
        just those rows move, in place; any other selection copies the buffers."""
        length, count = self.keys.shape[-2], len(indices)
        moved = torch.nonzero(indices != torch.arange(count, device=indices.device)).flatten()
        if bool((indices[moved] >= count).all()):
            for buffer in (self._key_buffer, self._value_buffer):
                buffer[moved] = buffer[indices[moved]]
            self._key_buffer, self._value_buffer = self._key_buffer[:count], self._value_buffer[:count]
        else:
            self._key_buffer, self._value_buffer = self._key_buffer[indices], self._value_buffer[indices]
        self._expose(length)


def compaction(keep: Sequence[int]) -> list[int]:
    """A new row order for keeping the slots ``keep`` (ascending) that moves as few rows as possible: a kept
    row among the first ``len(keep)`` slots stays, and the holes there take the kept rows beyond. A
    finished row then costs one row's copy, not the whole cache's."""
    count, kept = len(keep), set(keep)
    order = list(range(count))
    holes = [slot for slot in range(count) if slot not in kept]
    for hole, row in zip(holes, [slot for slot in keep if slot >= count]):
        order[hole] = row
    return order


def reserve(cache: Any, room: int) -> None:
    """Give every plain full-attention layer of a filled ``DynamicCache`` buffers with ``room`` more
    positions. Other layer kinds (sliding windows, quantised, static) keep their own update rules."""
    cache.layers = [ReservedLayer.holding([(layer.keys, layer.values)], layer.keys.shape[-2], room)
                    if type(layer) is DynamicLayer and layer.is_initialized else layer
                    for layer in cache.layers]


def joinable(config: Any) -> bool:
    """Whether this model's caches can be joined: every layer is a plain full-attention one (a sliding
    window keeps only its last positions, so rows of different lengths would not line up)."""
    return all(type(layer) is DynamicLayer for layer in DynamicCache(config=config).layers)


def join(parts: Sequence[tuple[Any, int]], room: int) -> Any:
    """One cache holding the rows of ``parts`` (a filled cache, and the first of its positions to keep),
    right-aligned at the longest kept length, with ``room`` positions after. The first part's cache
    object is reused, its layers replaced one at a time, so that while joining a running batch into a
    new one the process holds one extra layer, not a second cache; the other parts are left as they were."""
    length = max(cache.layers[0].keys.shape[-2] - start for cache, start in parts)
    first = parts[0][0]
    for i in range(len(first.layers)):
        kept = [(cache.layers[i].keys[:, :, start:], cache.layers[i].values[:, :, start:]) for cache, start in parts]
        first.layers[i] = ReservedLayer.holding(kept, length, room)
    return first
