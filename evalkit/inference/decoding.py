"""Batched greedy generation with continuous batching: a row that finishes makes room for the next prompt.

Generation is our own greedy loop rather than ``model.generate``: ``generate`` adds per-step overhead
around the bare forward (docs/benchmarks.md), it cannot start from a shared prefix cache, and it keeps
finished rows in the batch. Here a row leaves the batch (and the KV cache) the moment it emits EOS or a
stop string, and when enough rows have left, the next prompts are prefilled (on their own database's
prefix cache) and join the running batch (:func:`~evalkit.inference.kv_cache.join`).

Why: on a CPU one decoding step costs a fixed ~100 ms (the weights stream through the cores once per
step) plus ~3 ms a row, so a batch that runs until its longest row ends spends most of its steps on a
few rows. Keeping the batch full took the base model's 972 Spider dev questions from 12 min 7 s to
9 min 22 s (docs/benchmarks.md); on a few databases it gains nothing.
Models whose caches cannot be joined (sliding-window layers) decode one batch at a time, as before.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from evalkit.errors import ConfigError
from evalkit.inference import kv_cache
from evalkit.inference.forward import forward_rows, max_length, prefix_cache, vocab_size
from evalkit.inference.planning import (BatchLimits, Row, adapt_to_out_of_memory, plan_prefix_groups, release_memory,
                                        row_for)
from evalkit.inference.tokens import cut_at_stop, encode_all
from evalkit.models import LoadedModel

REFILL_SHARE = 4  # prompts join a running batch once a quarter of its rows could be added (fewer joins, each a copy)


@dataclass
class _Running:
    """The rows decoding together. ``mask`` covers the cache and the room after it: 1 where a position
    holds a real token or one still to come; ``length`` positions are filled."""

    rows: list[Row]
    generated: list[list[int]]
    texts: list[str]
    cache: Any
    mask: torch.Tensor
    length: int
    positions: torch.Tensor  # [rows, 1]: the position of each row's next token
    next_tokens: torch.Tensor  # [rows]: each row's next token, not yet recorded

    def first_real(self) -> int:
        """The first cache position that some row needs: everything before it is padding for all rows."""
        return int(self.mask[:, :self.length].any(dim=0).nonzero()[0, 0])

    def width(self) -> int:
        return self.length - self.first_real()

    def keep(self, slots: list[int]) -> None:
        """Keep the rows in ``slots`` (their order may change: see :func:`~evalkit.inference.kv_cache.compaction`)."""
        slots = kv_cache.compaction(slots)
        index = torch.tensor(slots, device=self.mask.device)
        self.cache.batch_select_indices(index)
        self.mask, self.positions, self.next_tokens = self.mask[index], self.positions[index], self.next_tokens[index]
        self.rows, self.generated, self.texts = ([items[s] for s in slots]
                                                 for items in (self.rows, self.generated, self.texts))


def _prefill(model: LoadedModel, rows: list[Row], prefix_len: int, prefix: Any) -> _Running:
    out, batch = forward_rows(model, rows, prefix_len, prefix, 1, use_cache=True)
    return _Running(rows, [[] for _ in rows], [""] * len(rows), out.past_key_values, batch["attention_mask"],
                    batch["attention_mask"].shape[1], batch["position_ids"][:, -1:] + 1, out.logits[:, -1].argmax(dim=-1))


def _join(parts: list[_Running], room: int) -> _Running:
    """One batch of the parts' rows, right-aligned at the longest part's needed width (positions that are
    padding for every row of a part are dropped), with ``room`` positions for the tokens to come."""
    starts = [part.first_real() for part in parts]
    width = max(part.length - start for part, start in zip(parts, starts))
    cache = kv_cache.join([(part.cache, start) for part, start in zip(parts, starts)], room)
    mask = parts[0].mask.new_zeros((sum(len(p.rows) for p in parts), width + room))
    mask[:, width:] = 1
    first = 0
    for part, start in zip(parts, starts):
        mask[first:first + len(part.rows), width - (part.length - start):width] = part.mask[:, start:part.length]
        first += len(part.rows)
    return _Running([r for p in parts for r in p.rows], [g for p in parts for g in p.generated],
                    [t for p in parts for t in p.texts], cache, mask, width,
                    torch.cat([p.positions for p in parts]), torch.cat([p.next_tokens for p in parts]))


class _Queue:
    """The prompts still to start, group by group (one shared prefix each), longest first within a group;
    a group's prefix cache is made when its first rows start and dropped after its last."""

    def __init__(self, model: LoadedModel, groups: list[tuple[int, list[Row]]]) -> None:
        self.model = model
        self.groups = deque((prefix_len, deque(sorted(members, key=lambda r: -len(r.tokens))))
                            for prefix_len, members in groups if members)
        self.prefix: Any = None

    def __len__(self) -> int:
        return sum(len(members) for _, members in self.groups)

    def fitting(self, limits: BatchLimits, running: _Running | None, room: int) -> int:
        """How many of the next rows fit beside ``running`` within ``limits``: rows, and rows x padded
        positions (each row holds the longest row's width plus ``room``)."""
        rows, width = (len(running.rows), running.width()) if running else (0, 0)
        count = 0
        for _, members in self.groups:
            for row in members:
                width = max(width, len(row.tokens))
                if rows + count + 1 > min(limits.max_rows, limits.max_logits) or \
                        (rows + count + 1) * (width + room) > limits.max_tokens:
                    return max(count, 0 if running else 1)
                count += 1
        return count

    def take(self, count: int, one_group: bool) -> Iterator[tuple[list[Row], int, Any]]:
        """The next ``count`` rows as (rows, prefix length, prefix cache) chunks, one per group."""
        while count and self.groups:
            prefix_len, members = self.groups[0]
            if self.prefix is None and prefix_len:
                self.prefix = prefix_cache(self.model, members[0].tokens[:prefix_len])
            chunk = [members.popleft() for _ in range(min(count, len(members)))]
            count -= len(chunk)
            yield chunk, prefix_len, self.prefix
            if not members:
                self.groups.popleft()
                self.prefix = None
                release_memory()  # one database's prompts started: its prefix and freed batches go back to the OS
            if one_group:
                return


def _record(model: LoadedModel, running: _Running, max_new_tokens: int, stop: Sequence[str],
            eos: set[int]) -> tuple[list[int], list[tuple[Row, str]]]:
    """Record each row's next token; return the slots still decoding and the rows that finished, with text."""
    keep, finished = [], []
    for slot, token in enumerate(running.next_tokens.tolist()):
        done = token in eos
        if not done:
            running.generated[slot].append(token)
            text = model.tokenizer.decode(running.generated[slot], skip_special_tokens=True,
                                          clean_up_tokenization_spaces=False)
            running.texts[slot] = text
            done = len(running.generated[slot]) == max_new_tokens or any(s in text for s in stop if s)
        if done:
            finished.append((running.rows[slot], cut_at_stop(running.texts[slot], stop)))
        else:
            keep.append(slot)
    return keep, finished


@torch.inference_mode()
def _admit(model: LoadedModel, queue: _Queue, limits: BatchLimits, running: _Running | None, room: int,
           joinable: bool) -> _Running | None:
    """Start the next prompts when a quarter of the batch's rows (or all the remaining prompts) fit beside
    the running rows, or when none run. Joining copies the running cache, hence not for every free row."""
    fit = queue.fitting(limits, running, room) if (joinable or running is None) else 0
    if not fit or (running is not None and fit < min(max(1, limits.max_rows // REFILL_SHARE), len(queue))):
        return running
    parts = [_prefill(model, rows, prefix_len, prefix) for rows, prefix_len, prefix in queue.take(fit, not joinable)]
    if joinable:
        return _join(([running] if running else []) + parts, room)
    kv_cache.reserve(parts[0].cache, room)
    parts[0].mask = torch.cat([parts[0].mask, parts[0].mask.new_ones((len(parts[0].rows), room))], dim=1)
    return parts[0]


@torch.inference_mode()
def _step(model: LoadedModel, running: _Running, keep: list[int]) -> _Running | None:
    """Drop the finished rows and run one decoding step for the others."""
    if not keep:
        return None
    if len(keep) < len(running.rows):
        running.keep(keep)
    running.length += 1
    out = model.model(input_ids=running.next_tokens.unsqueeze(1), attention_mask=running.mask[:, :running.length],
                      position_ids=running.positions, past_key_values=running.cache, use_cache=True)
    running.positions = running.positions + 1
    running.next_tokens = out.logits[:, -1].argmax(dim=-1)
    return running


def _decode(model: LoadedModel, queue: _Queue, limits: BatchLimits, max_new_tokens: int, stop: Sequence[str],
            eos: set[int], joinable: bool) -> Iterator[list[tuple[Row, str]]]:
    """Decode every queued row, yielding rows as they finish."""
    running: _Running | None = None
    while running or queue:
        running = _admit(model, queue, limits, running, max_new_tokens, joinable)
        keep, finished = _record(model, running, max_new_tokens, stop, eos)
        if finished:
            yield finished
        running = _step(model, running, keep)


def _eos_ids(model: LoadedModel) -> set[int]:
    """The tokenizer's EOS and the generation config's (a list for some models)."""
    ids = {model.tokenizer.eos_token_id}
    configured = getattr(getattr(model.model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return {i for i in ids if i is not None}


def generate_batches(model: LoadedModel, prompts: Sequence[str], *, max_new_tokens: int, stop: Sequence[str] = (),
                     batch_size: int | None = None, share_prefix: bool = True) -> Iterator[list[tuple[int, str]]]:
    """Yield ``[(prompt index, new text), ...]`` as prompts finish: greedy, left padded, continuously batched.

    Prompts are tokenised without special tokens (chat prompts already carry theirs; as the harness's
    ``generate_until``); a prompt longer than the model's window minus ``max_new_tokens`` keeps its end.
    Prompts sharing a long token prefix (the system prompt and schema of one Spider database) prefill it
    once. On out-of-memory the limits halve and the unfinished prompts start again (greedy decoding
    gives them the same text); finished ones are kept.
    """
    window = max_length(model) - max_new_tokens
    if window < 1:
        raise ConfigError(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in the model's "
                          f"{max_length(model)}-token window. Fix: lower max_new_tokens.")
    encoded = encode_all(model.tokenizer, prompts)
    rows: dict[bytes, Row] = {}
    for index, prompt in enumerate(prompts):
        row_for(encoded[prompt][-window:], 1, rows).targets.append((index, ()))
    limits = BatchLimits.for_device(model.device, "generate", batch_size, vocab_size(model))
    eos, joinable = _eos_ids(model), kv_cache.joinable(model.model.config)
    groups = plan_prefix_groups(list(rows.values())) if share_prefix else [(0, list(rows.values()))]
    done: set[int] = set()
    while True:
        queue = _Queue(model, [(prefix_len, [r for r in members if id(r) not in done]) for prefix_len, members in groups])
        try:
            for finished in _decode(model, queue, limits, max_new_tokens, stop, eos, joinable):
                done.update(id(row) for row, _ in finished)
                yield [(index, text) for row, text in finished for index, _ in row.targets]
            return
        except (RuntimeError, MemoryError) as exc:
            unfinished = [row for row in rows.values() if id(row) not in done]
            adapt_to_out_of_memory(exc, max(len(unfinished) - len(queue), 1), max(len(r.tokens) for r in unfinished),
                                   limits)
