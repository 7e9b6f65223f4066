"""Batched inference over a crash-safe cache: the two calls every suite makes of a model.

- :func:`generate`: greedy continuations (Spider SQL), stopping at EOS or a stop string.
- :func:`choice_logprobs`: the log-likelihood of each answer choice after each context (MMLU letters),
  computed as lm-evaluation-harness's ``loglikelihood`` does, with automatic shared-prefix reuse.

Both look every request up in an optional :class:`ResultCache` first, compute only what is missing, and
write each batch's results the moment the batch finishes: a run killed half-way resumes where it died.
Both take a :class:`~evalkit.models.LoadedModel` (run by the transformers backend,
:mod:`evalkit.inference.engine`) or any :class:`~evalkit.inference.backend.Backend`, such as
:class:`evalkit.inference.vllm_backend.VLLMBackend`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from evalkit.errors import CacheError, ConfigError
from evalkit.inference.backend import Backend
from evalkit.inference.cache import ResultCache, default_cache_path, result_key
from evalkit.inference.engine import HFBackend
from evalkit.models import LoadedModel

__all__ = ["Backend", "HFBackend", "ResultCache", "as_backend", "choice_logprobs", "default_cache_path", "generate"]

log = logging.getLogger(__name__)


def as_backend(model: LoadedModel | Backend) -> Backend:
    """The backend that runs ``model``: transformers for a LoadedModel, else the backend itself."""
    if isinstance(model, LoadedModel):
        return HFBackend(model)
    if isinstance(model, Backend):
        return model
    raise ConfigError(f"Expected a LoadedModel (from evalkit.models.load_model) or an inference backend, got "
                      f"{type(model).__name__}. Fix: load the model with load_model(spec, adapter).")


def _progress_bar(progress: bool | str, total: int, default: str, unit: str) -> Any:
    from tqdm.auto import tqdm

    desc = progress if isinstance(progress, str) else default
    return tqdm(total=total, desc=desc, unit=unit, disable=not progress or total == 0, dynamic_ncols=True)


def _cached_run(keys: Sequence[str], compute: Callable[[list[int]], Iterator[list[tuple[int, Any]]]], *,
                cache: ResultCache | None, kind: str, model_key: str, progress: bool | str, unit: str) -> list[Any]:
    """Serve ``keys`` from the cache, compute the rest (``compute`` gets the indices of distinct missing
    keys and yields per-batch ``(index, value)`` lists), store each batch as it finishes. A batch the
    cache cannot store is still returned: a warning says so and the rest of the call runs uncached."""
    first: dict[str, int] = {}
    for index, key in enumerate(keys):
        first.setdefault(key, index)
    results: dict[str, Any] = cache.get_many(list(first)) if cache is not None else {}
    missing = [index for key, index in first.items() if key not in results]
    log.info("%s: %d requests, %d distinct, %d from cache, %d to compute",
             kind, len(keys), len(first), len(first) - len(missing), len(missing))
    with _progress_bar(progress, len(missing), kind, unit) as bar:
        for batch in compute(missing):
            done = {keys[index]: value for index, value in batch}
            if cache is not None:
                try:
                    cache.put_many(done, kind=kind, model_key=model_key)
                except CacheError as exc:
                    warnings.warn(f"{exc} The computed results are used; the rest of this call is not cached.",
                                  RuntimeWarning, stacklevel=2)
                    cache = None
            results.update(done)
            bar.update(len(batch))
    return [results[key] for key in keys]


def generate(model: LoadedModel | Backend, prompts: list[str], *, max_new_tokens: int = 256, stop: Sequence[str] = (),
             batch_size: int | None = None, cache: ResultCache | None = None,
             progress: bool | str = True, share_prefix: bool = True) -> list[str]:
    """Greedy continuation of each prompt (only the new text), in input order.

    Batched (longest prompts first, left padded); a row stops at EOS or when its text contains one of
    ``stop``, and the text is cut before the earliest stop string, and leaves the batch. Prompts sharing a
    long token prefix (one database's schema) prefill it once (``share_prefix``). ``batch_size=None`` sizes
    batches automatically and halves them on out-of-memory. Deterministic: greedy decoding, no sampling.
    """
    backend = as_backend(model)
    if isinstance(stop, str):
        raise ConfigError(f"stop={stop!r} is one string; pass a sequence of stop strings, e.g. stop=[{stop!r}].")
    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens={max_new_tokens}: must be at least 1.")
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, str) or not prompt:
            raise ConfigError(f"Prompt {index} is {prompt!r}: every prompt must be a non-empty string.")
    stop = list(stop)
    params = {"max_new_tokens": max_new_tokens, "stop": stop}
    key_of_model = backend.model_key()
    version = backend.engine_versions["generate"]
    keys = [result_key(version, "generate", key_of_model, {"prompt": p, **params}) for p in prompts]

    def compute(indices: list[int]) -> Iterator[list[tuple[int, str]]]:
        for batch in backend.generate_batches([prompts[i] for i in indices], max_new_tokens=max_new_tokens,
                                              stop=stop, batch_size=batch_size, share_prefix=share_prefix):
            yield [(indices[j], text) for j, text in batch]

    return _cached_run(keys, compute, cache=cache, kind="generate", model_key=key_of_model, progress=progress,
                       unit="prompt")


def _choices_per_context(contexts: Sequence[str], choices: Sequence[str] | Sequence[Sequence[str]]) -> list[list[str]]:
    if isinstance(choices, str):
        raise ConfigError(f"choices={choices!r} is one string. Fix: pass a list such as [' A', ' B', ' C', ' D'].")
    if all(isinstance(c, str) for c in choices):
        return [list(choices)] * len(contexts)  # type: ignore[arg-type]
    if len(choices) != len(contexts):
        raise ConfigError(f"choices has {len(choices)} lists for {len(contexts)} contexts. Fix: pass one list of "
                          "choices per context, or one flat list shared by all contexts.")
    per_context = []
    for index, options in enumerate(choices):
        if isinstance(options, str) or not all(isinstance(c, str) for c in options):
            raise ConfigError(f"choices[{index}] is {options!r}: each entry must be a list of strings.")
        per_context.append(list(options))
    return per_context


def choice_logprobs(model: LoadedModel | Backend, contexts: list[str], choices: Sequence[str] | Sequence[Sequence[str]], *,
                    batch_size: int | None = None, cache: ResultCache | None = None, progress: bool | str = True,
                    share_prefix: bool = True) -> list[list[float]]:
    """``result[i][j]``: log-likelihood of continuation ``choices[j]`` (or ``choices[i][j]``) after ``contexts[i]``.

    Tokenisation, BOS handling and scoring follow lm-evaluation-harness's ``loglikelihood`` (see
    :mod:`evalkit.inference.engine`): pass the continuation with its leading space (``" A"``), as the
    harness's ``target_delimiter`` makes it. Contexts that share a long token prefix (few-shot prompts of
    one subject) compute it once (``share_prefix``; off only for comparisons and benchmarks).
    """
    backend = as_backend(model)
    per_context = _choices_per_context(contexts, choices)
    for index, context in enumerate(contexts):
        if not isinstance(context, str):
            raise ConfigError(f"Context {index} is {type(context).__name__}, not a string.")
    pairs = [(context, choice) for context, options in zip(contexts, per_context) for choice in options]
    key_of_model = backend.model_key()
    version = backend.engine_versions["loglikelihood"]
    keys = [result_key(version, "loglikelihood", key_of_model, {"context": c, "continuation": x}) for c, x in pairs]

    def compute(indices: list[int]) -> Iterator[list[tuple[int, float]]]:
        for batch in backend.loglikelihood_batches([pairs[i] for i in indices], batch_size=batch_size,
                                                   share_prefix=share_prefix):
            yield [(indices[j], value) for j, value in batch]

    flat = _cached_run(keys, compute, cache=cache, kind="loglikelihood", model_key=key_of_model,
                       progress=progress, unit="choice")
    out, start = [], 0
    for options in per_context:
        out.append(flat[start:start + len(options)])
        start += len(options)
    return out
