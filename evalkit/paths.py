"""Where tradeoff reads data and writes caches.

Precedence for the data directory: an explicit argument (the ``--data-dir`` option) > the
``TRADEOFF_DATA_DIR`` environment variable > ``datasets_cache/`` at the project root. The cache
directory (converted models, inference results) is ``TRADEOFF_CACHE_DIR`` or ``datasets_cache/``.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE_DIR = PROJECT_ROOT / "datasets_cache"
DATA_DIR_ENV = "TRADEOFF_DATA_DIR"
CACHE_DIR_ENV = "TRADEOFF_CACHE_DIR"


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the data directory holding ``spider/``, ``spider_syn/`` and ``mmlu/``."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return DEFAULT_CACHE_DIR


def cache_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Resolve (and create) the directory for converted models and the inference cache; a path that
    cannot be a folder raises :class:`~evalkit.errors.CacheError` naming it."""
    from evalkit.errors import CacheError

    chosen = explicit or os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR
    path = Path(chosen).expanduser().resolve()
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise CacheError(f"Cache folder {path}: {blocker} is a file, not a folder. Fix: pass a folder "
                         f"(--results-cache or {CACHE_DIR_ENV}).")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(f"Cache folder {path} cannot be created ({exc.strerror}). Fix: pass a writable folder "
                         f"(--results-cache or {CACHE_DIR_ENV}).") from None
    return path
