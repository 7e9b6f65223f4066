"""Identities of weights, computed from files and never from a loaded model.

A result cache key and a baseline file both name the model they were made with by these fingerprints,
so results can never be mixed up between models, and a baseline can be checked before any weights load.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from evalkit.models.resolve import resolve_base
from evalkit.paths import cache_dir as resolve_cache_dir

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")


def fingerprint_files(paths: list[Path], memo_dir: Path) -> str:
    """sha256 over files, memoised by (path, size, mtime) so 500 MB of weights is hashed once."""
    stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(paths)]
    key = hashlib.sha256(json.dumps(stats).encode()).hexdigest()
    memo = memo_dir / "fingerprints" / f"{key}.txt"
    if memo.is_file():
        return memo.read_text().strip()
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    value = digest.hexdigest()[:16]
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(value)
    return value


def directory_fingerprint(directory: Path, cache_dir: str | Path | None = None) -> str:
    """The weights and configs of a model or adapter folder."""
    files = [p for p in directory.iterdir() if p.suffix in WEIGHT_SUFFIXES or p.name.endswith("config.json")]
    return fingerprint_files(files, resolve_cache_dir(cache_dir))


def _hub_revision(repo_id: str) -> str | None:
    """The commit of a hub model's ``config.json`` (what transformers records as ``_commit_hash``)."""
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id, "config.json")).parent.name
    except Exception:  # noqa: BLE001 - offline or unknown: the fingerprint then names the id alone
        return None


def base_fingerprint(spec: str, cache_dir: str | Path | None = None) -> str:
    """The base model's fingerprint: its folder's files, or a hub id with its revision."""
    _, local = resolve_base(spec, cache_dir)
    if local is not None:
        return directory_fingerprint(local, cache_dir)
    return hashlib.sha256(f"{spec}@{_hub_revision(spec)}".encode()).hexdigest()[:16]


def combined_fingerprint(base: str, adapter: str | None) -> str:
    """One id for (base weights, adapter weights)."""
    return hashlib.sha256(f"{base}:{adapter or '-'}".encode()).hexdigest()[:16]
