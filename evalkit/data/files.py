"""Small file helpers shared by the loaders: checksums and JSON reading with clear errors."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from evalkit.errors import DataError, EvalkitError

FETCH_HINT = "run `python -m evalkit.data fetch --from <folder with spider/ and mmlu/>` or pass --data-dir"


def sha256_file(path: Path) -> str:
    """Hex sha256 of one file, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_files(paths: Iterable[Path]) -> str:
    """One sha256 over several files (names and contents), stable across machines."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def require_file(path: Path, what: str) -> Path:
    """Return ``path`` or raise a DataError naming the missing file and the fix."""
    if not path.is_file():
        raise DataError(f"{what} not found: {path}. Fix: {FETCH_HINT}.")
    return path


def decode_utf8(data: bytes, path: Path, error: type[EvalkitError] = DataError) -> str:
    """UTF-8 text without a leading byte-order mark (editors on Windows write one; it would otherwise
    become part of the first line). Other bytes are never replaced silently: ``error`` names the file,
    the line and the byte."""
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise error(f"{path}, line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}). "
                    "Fix: save the file as UTF-8.") from None


def read_json(path: Path, what: str) -> Any:
    """Parse a JSON file, turning parse errors into a DataError with the line and column."""
    require_file(path, what)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{what} is not valid JSON: {path} (line {exc.lineno}, column {exc.colno}: {exc.msg}). "
            f"Fix: restore the original file ({FETCH_HINT})."
        ) from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{what} is not UTF-8 text: {path} (byte {exc.start}). Fix: restore the original file.") from exc
