"""The engine's planning, without a model: prefix groups, stop strings, batch limits and out-of-memory back-off."""

from __future__ import annotations

import pytest
import torch

from evalkit.errors import ConfigError, EvalkitError
from evalkit.inference import _choices_per_context
from evalkit.inference.planning import (UNLIMITED, BatchLimits, Cost, build_rows, group_cost, plan_prefix_groups,
                                       run_adaptive)
from evalkit.inference.kv_cache import compaction
from evalkit.inference.tokens import cut_at_stop


def _subject(header: int, shots: int, question_lengths: list[int]) -> list[tuple[list[int], list[int]]]:
    """(context, continuation) token lists shaped like 5-shot MMLU: a shared header+shots, then the question."""
    prefix = [1000 + header] + list(range(shots))
    return [(prefix + [5000 + 100 * header + q] * n, [330]) for q, n in enumerate(question_lengths)]


def test_rows_of_one_subject_share_their_prefix_and_subjects_do_not() -> None:
    requests = _subject(1, 300, [20, 35, 20]) + _subject(2, 300, [10, 40]) + [([7] * 50, [330]), ([8] * 30, [389])]
    groups = plan_prefix_groups(build_rows(requests, max_length=8192))
    shared = sorted((prefix, len(rows)) for prefix, rows in groups)
    assert shared == [(0, 2), (301, 2), (301, 3)]


def test_identical_inputs_merge_and_the_prefix_never_covers_a_scored_position() -> None:
    context = list(range(200))
    requests = [(context, [330]), (context, [389]), (context, [340, 12, 13]), (context + [9], [1])]
    rows = build_rows(requests, max_length=8192)
    assert sorted(len(r.targets) for r in rows) == [1, 1, 2]  # the two one-token letters share one input
    (prefix, members), = plan_prefix_groups(rows)
    assert len(members) == 3
    for row in members:
        assert prefix <= len(row.tokens) - row.n_scored  # every scored position runs in the suffix pass
    assert prefix == 199


def test_left_truncation_keeps_the_end_like_the_harness() -> None:
    (row,) = build_rows([(list(range(100)), [500, 501])], max_length=10)
    assert row.tokens.tolist() == [*range(91, 100), 500] and row.n_scored == 2
    with pytest.raises(ConfigError, match="continuation has 12 tokens, more than the model's 10"):
        build_rows([([1], list(range(12)))], max_length=10)


def test_cut_at_stop_uses_the_earliest_stop_string() -> None:
    assert cut_at_stop("SELECT 1;\n\nThen more", [";", "\n\n"]) == "SELECT 1"
    assert cut_at_stop("no stop here", [";", ""]) == "no stop here"
    assert cut_at_stop("a\n\nb;", ["\n\n", ";"]) == "a"


def test_choices_shared_or_per_context() -> None:
    assert _choices_per_context(["x", "y"], [" A", " B"]) == [[" A", " B"], [" A", " B"]]
    assert _choices_per_context(["x", "y"], [[" yes"], [" no", " maybe"]]) == [[" yes"], [" no", " maybe"]]
    with pytest.raises(ConfigError, match="one string"):
        _choices_per_context(["x"], " A")
    with pytest.raises(ConfigError, match="2 lists for 3 contexts"):
        _choices_per_context(["x", "y", "z"], [[" a"], [" b"]])


def test_batches_respect_limits_and_halve_on_out_of_memory() -> None:
    items = list(range(20, 0, -1))  # costs 20..1, longest first
    seen: list[list[int]] = []

    def run(chunk: list[int]) -> list[int]:
        if sum(chunk) > 40:  # a real torch OOM exception, raised where a device would raise it
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        seen.append(chunk)
        return chunk

    limits = BatchLimits(max_rows=8, max_tokens=10_000)
    done = [x for batch in run_adaptive(items, Cost, limits, run) for x in batch]
    assert done == items  # nothing lost, nothing repeated, order kept
    assert limits.max_rows < 8 and all(sum(chunk) <= 40 for chunk in seen)
    token_limited = BatchLimits(max_rows=100, max_tokens=45)
    assert [len(b) for b in run_adaptive(items, Cost, token_limited, lambda c: c)][:2] == [2, 2]


def test_long_continuations_take_fewer_rows_so_their_logits_stay_bounded() -> None:
    """A batch's logits are rows x its longest continuation: one long answer caps the whole batch."""
    limits = BatchLimits(max_rows=8, max_tokens=10_000, max_logits=100)
    short = [Cost(50, rows=4, kept=5)] * 8  # 4 rows x 5 positions each: 5 groups fit (100 / 20)
    assert limits.rows_for(short) == 5
    mixed = [Cost(60, rows=4, kept=5), Cost(50, rows=4, kept=40), *short]  # the second group keeps 40
    assert limits.rows_for(mixed) == 1  # 8 rows x 40 > 100
    assert limits.rows_for([Cost(60, rows=4, kept=500)]) == 1  # one item always runs
    automatic = BatchLimits.for_device("cpu", "score", None, vocab_size=49152)
    assert automatic.max_logits * 49152 * 4 <= 128 << 20
    assert BatchLimits.for_device("cpu", "score", 3, vocab_size=49152).max_rows == 3


def test_a_group_too_large_for_one_forward_is_split_into_parts_that_fit() -> None:
    """Thirty questions with the same stem after the same shots form one group; each part must fit."""
    rows = build_rows(_subject(header=1, shots=500, question_lengths=[40] * 30), 8192)
    parts = BatchLimits(max_rows=8, max_tokens=2048, max_logits=UNLIMITED).split(rows)
    assert [len(p) for p in parts] == [3] * 10  # 2048 // 541 tokens
    assert [r for p in parts for r in p] == rows  # every row once, in order
    assert all(group_cost(p).tokens <= 2048 for p in parts)
    assert [len(p) for p in BatchLimits(8, UNLIMITED, max_logits=4).split(rows)] == [4] * 7 + [2]
    # An explicit batch size (rows only, no token bound) still cuts the group.
    assert [len(p) for p in BatchLimits.for_device("cpu", "score", 8, vocab_size=49152).split(rows)] == [8] * 3 + [6]


def test_out_of_memory_on_one_item_is_a_clear_error_and_other_errors_pass_through() -> None:
    def always_oom(chunk: list[int]) -> list[int]:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 99999999999 bytes")

    with pytest.raises(EvalkitError, match="Out of memory on a single request of 7 tokens"):
        list(run_adaptive([7, 6], Cost, BatchLimits(2, 100), always_oom))

    def broken(chunk: list[int]) -> list[int]:
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        list(run_adaptive([7, 6], Cost, BatchLimits(2, 100), broken))
    with pytest.raises(ConfigError, match="batch_size=0"):
        BatchLimits.for_device("cpu", "score", 0, 49152)


def test_vllm_is_imported_only_when_asked_for() -> None:
    import subprocess
    import sys

    code = ("import sys, evalkit.inference, evalkit.inference.engine, evalkit.inference.cache; "
            "print('vllm' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
    from evalkit.errors import ModelLoadError
    from evalkit.inference.vllm_backend import VLLMBackend

    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(ModelLoadError, match=r"needs vllm, which is not importable .*pip install -e '\.\[gpu\]'.*"
                                                 r"scripts/setup_vllm_cpu\.sh"):
            VLLMBackend.load()


def test_vllm_scores_each_continuation_token_after_the_tokens_before_it() -> None:
    """One query per continuation token; a context's one-token letters share one query (one vLLM request)."""
    from evalkit.inference.vllm_backend import next_token_queries

    encoded = [([1, 2, 3], [10]), ([1, 2, 3], [11]), ([1, 2], [7, 8, 9]), ([5], [6])]
    assert next_token_queries(encoded, [0, 1, 2, 3], window=8) == {
        (1, 2, 3): [(0, 10), (1, 11)], (1, 2): [(2, 7)], (1, 2, 7): [(2, 8)], (1, 2, 7, 8): [(2, 9)], (5,): [(3, 6)]}
    assert next_token_queries(encoded, [2], window=2) == {(1, 2): [(2, 7)], (2, 7): [(2, 8)], (7, 8): [(2, 9)]}


def test_a_finished_row_is_replaced_by_a_row_from_beyond_the_kept_count() -> None:
    """Keeping slots 0, 2, 3, 5 of six: slot 1 takes row 5; rows 0, 2, 3 stay where they are."""
    assert compaction([0, 2, 3, 5]) == [0, 5, 2, 3]
    assert compaction([0, 1, 2]) == [0, 1, 2]
    assert compaction([4]) == [4]
    assert compaction([1, 2]) == [2, 1]
