"""The inference protocol: what the cached front end (:mod:`evalkit.inference`) needs of a backend.

Two backends implement it: :class:`evalkit.inference.engine.HFBackend` (transformers, any device) and
:class:`evalkit.inference.vllm_backend.VLLMBackend` (vLLM, imported only when asked for).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Backend(Protocol):
    """Batched greedy generation and continuation log-likelihoods, yielded batch by batch.

    ``engine_versions`` (per request kind) and :meth:`model_key` enter every cache key, so results of
    another backend, model, dtype or engine change are never served.
    """

    engine_versions: Mapping[str, str]
    tokenizer: Any

    def model_key(self) -> str: ...

    def describe(self) -> dict[str, Any]: ...

    def generate_batches(self, prompts: Sequence[str], *, max_new_tokens: int, stop: Sequence[str],
                         batch_size: int | None, share_prefix: bool) -> Iterator[list[tuple[int, str]]]: ...

    def loglikelihood_batches(self, pairs: Sequence[tuple[str, str]], *, batch_size: int | None,
                              share_prefix: bool) -> Iterator[list[tuple[int, float]]]: ...
