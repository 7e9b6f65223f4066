"""Which tokens go through which forward pass: model inputs as compact rows, shared-prefix groups, and
batch limits that adapt to out-of-memory.

Pure bookkeeping over token arrays (no model calls), so the plans are unit-tested on their own; the
engine (:mod:`evalkit.inference.engine`) runs them. Why each plan saves work without changing a result
is explained there.
"""

from __future__ import annotations

import ctypes
import functools
import gc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import numpy as np

from evalkit.errors import ConfigError, EvalkitError
from evalkit.inference.tokens import encode_pairs

MIN_SHARED_PREFIX = 64  # tokens; below this a shared prefix saves less than its extra pass costs
MIN_NESTED_SAVING = 32  # token positions a nested prefix must save (rows sharing it - 1, times its length)
MIN_NESTED_STEP = 8  # tokens a nested prefix must add to its parent's
TOKENIZE_CHUNK = 512  # requests tokenised at a time (see score_rows)
T = TypeVar("T")
R = TypeVar("R")

# Automatic batch limits: (max rows, max padded tokens, max bytes of logits per forward). On CPU, batching
# barely speeds up prefill (docs/benchmarks.md) but helps decoding a lot, and Linux kills a process that
# over-allocates instead of raising, so the CPU limits are conservative. The logits bound matters for
# long continuations: 32 rows x 185 scored positions x a 49k vocabulary is 1.2 GB of fp32 logits, more
# than the model. On a GPU the limits start high and halve on out-of-memory.
AUTO_LIMITS = {
    ("cpu", "score"): (8, 4096, 128 << 20),
    ("cpu", "generate"): (64, 32768, 128 << 20),  # decoding: 64 rows gave 1.6x the new tokens/s of 16
    ("accelerator", "score"): (64, 65536, 4 << 30),
    ("accelerator", "generate"): (128, 262144, 4 << 30),
}
UNLIMITED = 1 << 62


# ------------------------------------------------------------------------------------------ batching


class Cost(NamedTuple):
    """What one item (a row, or a group of rows scored together) adds to a forward pass: padded token
    positions, rows, and the logit positions each of its rows keeps (its longest continuation)."""

    tokens: int
    rows: int = 1
    kept: int = 1


@dataclass
class BatchLimits:
    """How many rows, padded tokens and kept logits (rows x kept positions) one forward pass may take;
    halved on out-of-memory."""

    max_rows: int
    max_tokens: int
    max_logits: int = UNLIMITED

    @classmethod
    def for_device(cls, device: str, task: str, batch_size: int | None, vocab_size: int) -> BatchLimits:
        """The automatic limits for ``task`` ("score" or "generate") on ``device``, or ``batch_size`` rows."""
        if batch_size is not None:
            if batch_size < 1:
                raise ConfigError(f"batch_size={batch_size}: must be a positive integer, or None for automatic.")
            return cls(batch_size, UNLIMITED)
        rows, tokens, logit_bytes = AUTO_LIMITS[("cpu" if device == "cpu" else "accelerator", task)]
        return cls(rows, tokens, max(1, logit_bytes // (4 * max(vocab_size, 1))))  # fp32 logits

    def rows_for(self, costs: Sequence[Cost]) -> int:
        """How many of the next items (sorted by decreasing token cost) fit; always at least one. Every row
        of a batch keeps as many logit positions as the batch's longest continuation."""
        count = max(1, min(len(costs), self.max_rows, self.max_tokens // max(costs[0].tokens, 1)))
        rows = kept = 0
        for taken, cost in enumerate(costs[:count]):
            rows, kept = rows + cost.rows, max(kept, cost.kept)
            if taken and rows * kept > self.max_logits:
                return taken
        return count

    def split(self, members: Sequence[Row]) -> list[list[Row]]:
        """A group of rows scored together (:func:`group_cost`) cut into parts that each fit one forward
        pass, and none more rows than a batch may take. Questions that start alike (the same stem after the
        same five shots) can make a group of dozens of rows, each carrying a copy of the KV cache; run
        whole, one such group took 3 GB."""
        widest, kept = max(len(r.tokens) for r in members), max(r.n_scored for r in members)
        per = max(1, min(self.max_rows, self.max_tokens // max(widest, 1), self.max_logits // max(kept, 1)))
        return [list(members[start:start + per]) for start in range(0, len(members), per)]

    def shrink(self, failed_rows: int) -> None:
        self.max_rows = max(1, failed_rows // 2)
        self.max_tokens = max(1, self.max_tokens // 2)
        self.max_logits = max(1, self.max_logits // 2)


def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def release_memory() -> None:
    """Free what is unreachable and hand freed heap back to the operating system. Tensors of many sizes
    leave glibc's heap fragmented, and glibc keeps it: after scoring three 5-shot MMLU subjects the process
    held 1.68 GB, and 0.99 GB after ``malloc_trim`` (docs/benchmarks.md#memory)."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):  # not glibc (macOS, musl): nothing to trim
        pass


def adapt_to_out_of_memory(exc: BaseException, rows: int, tokens: int, limits: BatchLimits) -> None:
    """After ``exc`` on a batch of ``rows`` rows: halve ``limits`` if it is an out-of-memory error that a
    smaller batch may avoid; re-raise anything else, and an out-of-memory on a single row with the fix."""
    if not (_is_out_of_memory(exc) or isinstance(exc, MemoryError)):
        raise exc
    release_memory()
    if rows == 1:
        raise EvalkitError(
            f"Out of memory on a single request of {tokens} tokens. Fix: shorten the prompt, "
            "use a smaller model or 4-bit loading, or run on a device with more memory."
        ) from exc
    limits.shrink(rows)


def run_adaptive(items: Sequence[T], cost: Callable[[T], Cost], limits: BatchLimits,
                 run: Callable[[list[T]], R]) -> Iterator[R]:
    """Run ``items`` (sorted by decreasing cost) in batches within ``limits``; on out-of-memory, halve
    the limits and retry the same items, so a long run adapts instead of dying."""
    start = 0
    while start < len(items):
        count = limits.rows_for([cost(item) for item in items[start:start + limits.max_rows]])
        chunk = list(items[start:start + count])
        try:
            result = run(chunk)
        except (RuntimeError, MemoryError) as exc:
            adapt_to_out_of_memory(exc, count, cost(chunk[0]).tokens, limits)
            continue
        start += count
        yield result


# --------------------------------------------------------------------------------- log-likelihoods


@dataclass
class Row:
    """One model input and the continuations scored on its last ``n_scored`` positions.

    Tokens are an int32 array (4 bytes a token; a list of Python ints costs 36), so a full 5-shot MMLU
    run's 14,042 inputs of ~530 tokens take 30 MB, not 270."""

    tokens: np.ndarray
    n_scored: int
    targets: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)  # (request index, tokens)

    @functools.cached_property
    def order(self) -> bytes:
        """A key that sorts rows in token order (big-endian bytes compare like the token sequences)."""
        return self.tokens.astype(">u4").tobytes()


def row_for(tokens: Sequence[int], n_scored: int, rows: dict[bytes, Row]) -> Row:
    """The row for these input tokens, shared by every request with the same input."""
    array = np.asarray(tokens, dtype=np.int32)
    return rows.setdefault(array.tobytes(), Row(array, n_scored))


def build_rows(encoded: Sequence[tuple[list[int], list[int]]], max_length: int,
                rows: dict[bytes, Row] | None = None, first: int = 0) -> list[Row]:
    """The model inputs of (context, continuation) token pairs, identical inputs merged; ``rows`` and
    ``first`` (the index of ``encoded[0]`` among all requests) let a long request list build in chunks."""
    rows = {} if rows is None else rows
    for index, (ctx, cont) in enumerate(encoded, start=first):
        if len(cont) > max_length:
            raise ConfigError(f"Request {index}: the continuation has {len(cont)} tokens, more than the model's "
                              f"{max_length}. Fix: shorten the answer choices.")
        tokens = np.concatenate([np.asarray(ctx, dtype=np.int32), np.asarray(cont, dtype=np.int32)])
        row_for(tokens[-(max_length + 1):][:-1], len(cont), rows).targets.append((index, tuple(np.asarray(cont).tolist())))
    return list(rows.values())


def score_rows(tokenizer: Any, pairs: Sequence[tuple[str, str]], max_length: int) -> list[Row]:
    """The rows of (context, continuation) requests, tokenised :data:`TOKENIZE_CHUNK` at a time: a fast
    tokenizer holds ~100 bytes a token and a list of Python ints 36, so a full 5-shot MMLU run tokenised
    at once peaked at 7.5 GB; each chunk's lists become arrays and are freed before its rows are made."""
    rows: dict[bytes, Row] = {}
    for first in range(0, len(pairs), TOKENIZE_CHUNK):
        chunk = [(np.asarray(ctx, dtype=np.int32), np.asarray(cont, dtype=np.int32))
                 for ctx, cont in encode_pairs(tokenizer, pairs[first:first + TOKENIZE_CHUNK])]
        build_rows(chunk, max_length, rows, first)
    return list(rows.values())


def row_cost(row: Row) -> Cost:
    """A row scored alone: its tokens and its scored positions."""
    return Cost(len(row.tokens), 1, row.n_scored)


def group_cost(members: Sequence[Row]) -> Cost:
    """A group scored together (one cloze question's answers): every row pays the longest row's padded
    length, since each runs on its own copy of the group's KV cache."""
    return Cost(len(members) * max(len(r.tokens) for r in members), len(members), max(r.n_scored for r in members))


def _common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if differ.size else n


def plan_prefix_groups(rows: Sequence[Row], min_shared: int = MIN_SHARED_PREFIX) -> list[tuple[int, list[Row]]]:
    """Group rows by a shared token prefix of at least ``min_shared`` tokens: (prefix length, rows).

    Sorting the rows makes rows with a common prefix neighbours, and a run's common prefix is the
    smallest common prefix of neighbours. The prefix never reaches a scored position, so every row
    keeps a non-empty suffix. Rows sharing nothing come back as one group with prefix length 0.
    """
    groups: list[tuple[int, list[Row]]] = []
    alone: list[Row] = []
    run: list[Row] = []
    shared = 0

    def flush() -> None:
        if len(run) > 1:
            groups.append((shared, list(run)))
        else:
            alone.extend(run)

    for row in sorted(rows, key=lambda r: r.order):
        limit = len(row.tokens) - row.n_scored  # every scored position must run in the suffix pass
        if run:
            common = min(shared, _common_prefix(run[-1].tokens, row.tokens), limit)
            if common >= min_shared:
                run.append(row)
                shared = common
                continue
            flush()
        run, shared = [row], limit
    flush()
    if alone:
        groups.append((0, alone))
    return groups



def plan_nested(rows: Sequence[Row], prefix_len: int, start: int) -> tuple[list[tuple[int, list[Row]]], list[Row]]:
    """Split rows that share ``prefix_len`` cached tokens (and ``start`` tokens in all) into groups that
    share at least :data:`MIN_NESTED_STEP` more tokens and are worth a cache of their own (it saves
    :data:`MIN_NESTED_SAVING` token positions), and the rest. A run of rows that shares a little more
    but not enough to be worth a cache (questions that start alike) is searched again for the groups inside."""
    worth: list[tuple[int, list[Row]]] = []
    alone: list[Row] = []
    for shared, members in plan_prefix_groups(rows, min_shared=start + MIN_NESTED_STEP):
        if not shared:
            alone.extend(members)
        elif (len(members) - 1) * (shared - prefix_len) >= MIN_NESTED_SAVING:
            worth.append((shared, members))
        else:
            inner = plan_nested(members, prefix_len, shared)
            worth.extend(inner[0])
            alone.extend(inner[1])
    return worth, alone

