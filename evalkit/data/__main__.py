"""``python -m evalkit.data {fetch,verify}``: materialise and check the datasets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evalkit.data import fetch
from evalkit.errors import EvalkitError
from evalkit.paths import DEFAULT_CACHE_DIR, data_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evalkit.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("fetch", help="copy (--from) or download the datasets into a data folder, then verify")
    get.add_argument("--from", dest="source", type=Path, help="local folder holding spider/, spider_syn/, mmlu/")
    get.add_argument("--upstream", action="store_true", help="download from the hub / Spider archive (needs internet)")
    get.add_argument("--spider-zip", type=Path, help="a local spider_data.zip to unpack instead of downloading it")
    get.add_argument("--to", type=Path, default=DEFAULT_CACHE_DIR, help="target folder (default: datasets_cache/)")
    check = sub.add_parser("verify", help="check counts and checksums of the data folder in use")
    check.add_argument("--data-dir", type=Path, help="default: TRADEOFF_DATA_DIR or datasets_cache/")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            if not (args.source or args.upstream or args.spider_zip):
                parser.error("fetch needs --from DIR, --spider-zip FILE or --upstream")
            target = args.to.resolve()
            if args.source:
                fetch.copy_local(args.source.resolve(), target)
            if args.spider_zip:
                fetch.extract_spider_zip(args.spider_zip, target)
            if args.upstream:
                fetch.fetch_upstream(target)
            root = target
        else:
            root = data_dir(args.data_dir)
        report = fetch.verify(root)
    except EvalkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"data folder: {root}")
    for line in report.lines:
        print(f"  {line}")
    for problem in report.problems:
        print(f"  PROBLEM: {problem}", file=sys.stderr)
    print("OK" if report.ok else f"{len(report.problems)} problem(s)")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
