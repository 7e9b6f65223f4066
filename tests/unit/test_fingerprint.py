"""Adapter and model fingerprints (evalkit.models.fingerprint) follow the files' content: a result cache
keyed on them can never serve one adapter's results for another."""

from __future__ import annotations

import os
import time
from pathlib import Path

from evalkit.models import fingerprint
from evalkit.models.fingerprint import directory_fingerprint

SIZE = 1 << 20


def adapter(folder: Path, fill: bytes) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "adapter_config.json").write_text('{"r": 16}')
    (folder / "adapter_model.safetensors").write_bytes(fill * SIZE)
    return folder / "adapter_model.safetensors"


def rewrite_like_a_copy(weights: Path, fill: bytes) -> None:
    """New content of the same size, and the old atime and mtime put back (tar, cp -p, rsync -a)."""
    before = weights.stat()
    time.sleep(0.05)  # past the kernel's timestamp granularity, as any real copy is
    weights.write_bytes(fill * SIZE)
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (weights.stat().st_size, weights.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def test_an_adapter_rewritten_with_its_size_and_mtime_gets_a_new_fingerprint(tmp_path):
    """The memo was keyed by (path, size, mtime): the rerun served the old adapter's log-probs."""
    weights = adapter(tmp_path / "lora", b"a")
    first = directory_fingerprint(tmp_path / "lora", tmp_path / "cache")
    rewrite_like_a_copy(weights, b"b")
    assert directory_fingerprint(tmp_path / "lora", tmp_path / "cache") != first


def test_the_memo_spares_rehashing_and_never_outlives_a_rewrite(tmp_path, monkeypatch):
    """Files changed more than RACY_SECONDS ago are memoised (seen here through a clock moved ahead)."""
    weights = adapter(tmp_path / "lora", b"a")
    hashed = []
    real_hash, real_clock = fingerprint._hash_files, time.time_ns
    monkeypatch.setattr(fingerprint, "_hash_files", lambda paths: hashed.append(1) or real_hash(paths))
    monkeypatch.setattr(fingerprint.time, "time_ns", lambda: real_clock() + 10 * 10**9)
    first = directory_fingerprint(tmp_path / "lora", tmp_path / "cache")
    assert directory_fingerprint(tmp_path / "lora", tmp_path / "cache") == first and len(hashed) == 1
    rewrite_like_a_copy(weights, b"b")
    assert directory_fingerprint(tmp_path / "lora", tmp_path / "cache") != first and len(hashed) == 2


def test_a_freshly_written_file_is_hashed_every_time(tmp_path, monkeypatch):
    """Within RACY_SECONDS of a write, a second write in the same timestamp tick could keep the ctime."""
    adapter(tmp_path / "lora", b"a")
    hashed = []
    real_hash = fingerprint._hash_files
    monkeypatch.setattr(fingerprint, "_hash_files", lambda paths: hashed.append(1) or real_hash(paths))
    for _ in range(2):
        directory_fingerprint(tmp_path / "lora", tmp_path / "cache")
    assert len(hashed) == 2
