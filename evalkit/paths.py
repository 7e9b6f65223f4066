"""Where tradeoff reads data and writes caches.

Precedence for the data directory: an explicit argument (the ``--data-dir`` option) > the
``TRADEOFF_DATA_DIR`` environment variable > ``datasets_cache/`` at the project root. The cache
directory (converted models, inference results) is ``TRADEOFF_CACHE_DIR`` or ``datasets_cache/``.
"""

from __future__ import annotations

import os
import tempfile
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
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(f"Cache folder {path}: {folder_problem(path) or exc.strerror}. Fix: pass a folder you can "
                         f"write to (--results-cache or {CACHE_DIR_ENV}).") from None
    return path


def folder_problem(path: Path) -> str | None:
    """Why files cannot be written under ``path`` (created if need be), or None; creates nothing.

    A regular file on the way, or a nearest existing folder that refuses a new file. Writing is tried,
    not read from permission bits, which do not tell for root, ACLs or read-only mounts."""
    path = path.expanduser().absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as exc:
        return f"{existing} cannot be written ({exc.strerror})"
    return None
