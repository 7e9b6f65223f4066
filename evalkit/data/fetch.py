"""Materialise ``datasets_cache/`` (or any data folder) and verify it.

Two sources:

- ``--from DIR``: a local copy laid out as ``DIR/{spider,spider_syn,mmlu}`` (e.g. ``../shared/data``), with the
  forgetting benchmarks' folders (``arc``, ``hellaswag``, ``winogrande``, ``piqa``, ``openbookqa``) when it has
  them. Files are copied and checked against each folder's ``SHA256SUMS`` when it has one.
- upstream (needs the network): MMLU through ``datasets`` from the hub dataset ``cais/mmlu``, written back
  to the original CSV layout; Spider from its official release archive (a zip URL you can override); for
  the forgetting benchmarks it prints where each upstream release is (their files as released, not the
  hub's reshaped copies, are what the suites read).

``verify`` checks counts (dev 1034, MMLU test 14042, ...) and checksums of whatever folder is in use.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from evalkit.data import commonsense, mmlu, spider
from evalkit.data.files import decode_utf8, sha256_file
from evalkit.errors import DataError

FOLDERS = ("spider", "spider_syn", "mmlu", *commonsense.FOLDERS)
# Checksums of the release files that carry no SHA256SUMS of their own (from shared/data/MANIFEST.md).
KNOWN_SHA256 = {
    "spider/dev.json": "30d64a3fccde493226df79687aed9e4a1c0129525baf44f29c0573d914d758a4",
    "spider/tables.json": "61bb20aa401f03164e2d7f3b16509b7b5f79cc9c943ca7bd159046df1159e2ed",
    "spider_syn/train_spider.json": "f045467b2ec33df51362dddfcb9a9424470e3c0c5bacc2e2469805627300964a",
}
EXPECTED_COUNTS = {"spider dev": 1034, "mmlu dev": 285, "mmlu val": 1531, "mmlu test": 14042}
# The Spider site (yale-lily.github.io/spider) links spider_data.zip on Google Drive under this id.
SPIDER_ARCHIVE_URL = "https://drive.usercontent.google.com/download?id=1iRDVHLr4mX2wQKSgA9J8Pire73Jahh0m&export=download&confirm=t"
MMLU_HUB_ID = "cais/mmlu"


@dataclass
class Report:
    """What ``verify`` found: per-check lines and the problems among them."""

    lines: list[str]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_sums(folder: Path) -> tuple[int, list[str]]:
    """Verify ``folder/SHA256SUMS`` (``sha256  ./path`` lines); return (files checked, problems)."""
    sums = folder / "SHA256SUMS"
    problems = []
    checked = 0
    try:  # without its byte-order mark, which an editor on Windows adds: it would spoil the first line's sum
        text = decode_utf8(sums.read_bytes(), sums)
    except DataError as exc:
        return 0, [str(exc)]
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        expected, _, name = line.partition("  ")
        path = folder / name
        checked += 1
        if not path.is_file():
            problems.append(f"{path}: missing (listed in {sums}, line {line_no})")
        elif sha256_file(path) != expected:
            problems.append(f"{path}: sha256 differs from {sums}, line {line_no} (file changed or corrupt)")
    return checked, problems


def verify(root: Path) -> Report:
    """Check counts and checksums of the data under ``root``; never raises for a bad file, it reports it."""
    lines: list[str] = []
    problems: list[str] = []
    for folder in ("spider", "mmlu", *commonsense.FOLDERS):
        if (root / folder / "SHA256SUMS").is_file():
            checked, found = _check_sums(root / folder)
            lines.append(f"{folder}: {checked} files checked against SHA256SUMS, {len(found)} problem(s)")
            problems += found
    for rel, expected in KNOWN_SHA256.items():
        path = root / rel
        if path.is_file() and sha256_file(path) != expected:
            problems.append(f"{path}: sha256 is not the release file's ({expected[:12]}...)")
    try:
        dev = spider.load_spider("dev", root)
        counts = {"spider dev": len(dev)}
        for split in ("dev", "val", "test"):
            counts[f"mmlu {split}"] = len(mmlu.load_mmlu(split, root))
    except DataError as exc:
        return Report(lines, [*problems, str(exc)])
    missing = sorted({e.db_id for e in dev if e.db_path is None})
    lines.append(f"spider dev: {len(dev)} examples, {len(dev) - sum(e.db_path is None for e in dev)} executable"
                 + (f" (missing databases: {', '.join(missing)})" if missing else ""))
    try:
        train = spider.load_spider("train", root)
        lines.append(f"spider train: {len(train)} examples from {sorted({e.source for e in train})}")
    except DataError as exc:
        lines.append(f"spider train: unavailable ({exc})")
    lines.append("mmlu: " + ", ".join(f"{k.split()[1]} {v}" for k, v in counts.items() if k.startswith("mmlu")))
    found, missing_suites, broken = commonsense.counts(root)
    if found:
        lines.append("forgetting: " + ", ".join(f"{name} {n}" for name, n in found.items()))
        counts.update(found)
    if missing_suites:
        lines.append(f"forgetting: no data for {', '.join(missing_suites)} (optional; `fetch --upstream` says where "
                     "each comes from)")
    problems += broken
    for name, expected in {**EXPECTED_COUNTS, **commonsense.EXPECTED_COUNTS}.items():
        if name in counts and counts[name] != expected:
            problems.append(f"{name}: {counts[name]} rows, expected {expected}")
    return Report(lines, problems)


def copy_local(source: Path, target: Path) -> None:
    """Copy ``source/{spider,spider_syn,mmlu}`` into ``target`` (atomically per folder)."""
    if not source.is_dir():
        raise DataError(f"--from folder not found: {source}. Fix: point it at a folder holding spider/ and mmlu/.")
    present = [name for name in FOLDERS if (source / name).is_dir()]
    if "spider" not in present or "mmlu" not in present:
        raise DataError(f"{source} must hold spider/ and mmlu/ (found: {', '.join(present) or 'neither'}). "
                        "Fix: point --from at the folder that contains them (e.g. ../shared/data).")
    target.mkdir(parents=True, exist_ok=True)
    for name in present:
        tmp = target / f".{name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source / name, tmp)
        shutil.rmtree(target / name, ignore_errors=True)
        tmp.rename(target / name)


def write_mmlu_csvs(rows_by_split: Mapping[str, Iterable[Mapping]], target: Path) -> int:
    """Write ``cais/mmlu``-style rows (question, subject, choices[4], answer index) as the original CSVs.

    The hub's ``validation`` split becomes ``val``; files are ``<subject>_<split>.csv`` without a header.
    """
    letters = mmlu.LETTERS
    written = 0
    for split, rows in rows_by_split.items():
        folder = target / "mmlu" / "data" / {"validation": "val"}.get(split, split)
        folder.mkdir(parents=True, exist_ok=True)
        handles: dict[str, tuple] = {}
        try:
            for row in rows:
                subject = row["subject"]
                if subject not in handles:
                    handle = (folder / f"{subject}_{folder.name}.csv").open("w", encoding="utf-8", newline="")
                    handles[subject] = (handle, csv.writer(handle))
                handles[subject][1].writerow([row["question"], *row["choices"], letters[int(row["answer"])]])
                written += 1
        finally:
            for handle, _ in handles.values():
                handle.close()
    return written


def fetch_upstream(target: Path, spider_url: str = SPIDER_ARCHIVE_URL) -> None:
    """Download MMLU (hub ``cais/mmlu``) and the Spider release zip into ``target``."""
    import datasets

    try:
        hub = datasets.load_dataset(MMLU_HUB_ID, "all")
    except Exception as exc:  # datasets raises several types for "offline"
        raise DataError(f"Cannot download {MMLU_HUB_ID} ({exc}). Fix: connect to the internet (and unset "
                        "HF_DATASETS_OFFLINE / HF_HUB_OFFLINE), or use --from with a local copy.") from exc
    write_mmlu_csvs({split: hub[split] for split in ("dev", "validation", "test")}, target)
    print("The forgetting suites' files are not on the hub in their upstream form; download each into the folder "
          f"named, under {target}:")
    for name, (folder, source) in commonsense.UPSTREAM.items():
        print(f"  {name}: {folder}/ from {source}")
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "spider.zip"
        try:
            urllib.request.urlretrieve(spider_url, archive)
        except OSError as exc:
            raise DataError(f"Cannot download the Spider archive from {spider_url} ({exc}). "
                            "Fix: download spider_data.zip by hand and pass --spider-zip, or use --from.") from exc
        extract_spider_zip(archive, target)


def extract_spider_zip(archive: Path, target: Path) -> None:
    """Unpack an official ``spider_data.zip`` (top folder ``spider_data/`` or ``spider/``) to ``target/spider``."""
    try:
        with zipfile.ZipFile(archive) as zipped, tempfile.TemporaryDirectory(dir=target) as tmp:
            zipped.extractall(tmp)
            tops = [p for p in Path(tmp).iterdir() if (p / "dev.json").is_file()]
            if not tops:
                raise DataError(f"{archive} holds no folder with dev.json. Fix: pass the official spider_data.zip.")
            shutil.rmtree(target / "spider", ignore_errors=True)
            tops[0].rename(target / "spider")
    except zipfile.BadZipFile as exc:
        raise DataError(f"{archive} is not a zip archive ({exc}). Fix: download it again.") from exc
