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
    """Resolve (and create) the directory for converted models and the inference cache."""
    chosen = explicit or os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR
    path = Path(chosen).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path
