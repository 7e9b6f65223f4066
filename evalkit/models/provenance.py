"""What an adapter was trained on: the ``training.json`` that ``python -m training`` writes beside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evalkit.errors import ModelLoadError

PROVENANCE_FILE = "training.json"


def adapter_provenance(adapter: str | Path) -> dict[str, Any] | None:
    """The adapter's training facts (split, data checksum, prompt options, whether evaluation data was
    allowed in), or None for an adapter not written by ``python -m training``.

    Reports use it to flag an adapter scored on the data it was trained on. An unreadable file is an
    error: silently dropping the flag would hide exactly that mistake.
    """
    path = Path(adapter) / PROVENANCE_FILE
    if not path.is_file():
        return None
    try:
        facts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path} is unreadable ({exc}). Fix: restore it from the training run, or delete it "
                             "if the adapter's training data is unknown.") from exc
    if not isinstance(facts, dict):
        raise ModelLoadError(f"{path} holds {type(facts).__name__}, not an object. Fix: restore it from the training run.")
    return facts
