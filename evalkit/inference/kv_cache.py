"""A decoding KV cache with its room reserved: each step writes in place instead of concatenating.

transformers' ``DynamicLayer`` appends a step's keys and values with ``torch.cat``, which copies the
layer's whole cache at every step: for a batch decoding ``s`` tokens after an ``n``-token prompt that is
``s * (n + s/2)`` positions moved per layer where ``s`` suffice. :func:`reserve` swaps a filled cache's
full-attention layers for :class:`ReservedLayer`, which keeps keys and values in buffers sized for the
prompt plus the tokens still to come and exposes the filled part as a view, so attention reads exactly
the tensors it read before (same values, same shapes).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import DynamicLayer


class ReservedLayer(DynamicLayer):
    """A :class:`DynamicLayer` whose ``keys``/``values`` are views of larger buffers filled in place."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, room: int) -> None:
        super().__init__()
        self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
        self._hold(keys, values, keys.shape[-2] + room)

    def _hold(self, keys: torch.Tensor, values: torch.Tensor, capacity: int) -> None:
        """Copy ``keys``/``values`` into fresh buffers of ``capacity`` positions and expose the filled part."""
        length = keys.shape[-2]
        self._key_buffer = keys.new_empty((*keys.shape[:2], capacity, keys.shape[-1]))
        self._value_buffer = values.new_empty((*values.shape[:2], capacity, values.shape[-1]))
        self._key_buffer[:, :, :length] = keys
        self._value_buffer[:, :, :length] = values
        self._expose(length)

    def _expose(self, length: int) -> None:
        self.keys, self.values = self._key_buffer[:, :, :length], self._value_buffer[:, :, :length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new positions after the filled ones (growing the buffers only if the room runs out)."""
        start, count = self.keys.shape[-2], key_states.shape[-2]
        if start + count > self._key_buffer.shape[-2]:
            self._hold(self.keys, self.values, 2 * (start + count))
        self._key_buffer[:, :, start:start + count] = key_states
        self._value_buffer[:, :, start:start + count] = value_states
        self._expose(start + count)
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep only the rows ``indices`` (a row that finished decoding leaves the buffers too)."""
        length = self.keys.shape[-2]
        self._key_buffer, self._value_buffer = self._key_buffer[indices], self._value_buffer[indices]
        self._expose(length)


def reserve(cache: Any, room: int) -> None:
    """Give every plain full-attention layer of a filled ``DynamicCache`` buffers with ``room`` more
    positions. Other layer kinds (sliding windows, quantised, static) keep their own update rules."""
    cache.layers = [ReservedLayer(layer.keys, layer.values, room)
                    if type(layer) is DynamicLayer and layer.is_initialized else layer
                    for layer in cache.layers]
