"""``tradeoff``: the project's console command, one entry point for the tools around the evaluation.

The evaluation itself stays a pytest run (``pytest tests/eval ...`` or ``deepeval test run tests/eval ...``):
every example is a test, and pytest's options, markers and plugins apply. The command gathers what was
spread over ``python -m`` modules (the demo, the data tools, the Spider scorer, which keep working) and adds
``tradeoff report DIR``, which re-renders a finished run's summary and answer from its ``tradeoff.json``
without loading a model.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from evalkit import __version__
from evalkit.errors import EvalkitError

Command = Callable[[list[str]], int]


def _demo(argv: list[str]) -> int:
    from evalkit.demo import main

    return main(argv)


def _data(argv: list[str]) -> int:
    from evalkit.data.__main__ import main

    return main(argv)


def _spider_score(argv: list[str]) -> int:
    from evalkit.spider_score import main

    return main(argv)


# name -> (one-line help, the tool's own main, which parses the rest of the command line)
TOOLS: dict[str, tuple[str, Command]] = {
    "demo": ("train the CPU adapter if needed, evaluate base and adapter, print the answer "
             "(python -m evalkit demo)", _demo),
    "data": ("fetch or verify the datasets: tradeoff data fetch|verify ... (python -m evalkit.data)", _data),
    "spider-score": ("score predicted SQL against gold SQL by execution, like Spider's evaluation.py "
                     "(python -m evalkit.spider_score)", _spider_score),
}


def render_report(directory: Path, fmt: str, width: int, color: bool) -> str:
    """A report folder's summary as the end of its run printed it (``text``: the tables, counts,
    warnings and answer) or as ``tradeoff.md`` has it (``markdown``), from ``tradeoff.json`` alone."""
    from evalkit.readback import load_report
    from evalkit.report import render_text, to_markdown

    saved = load_report(directory)
    if fmt == "markdown":
        return to_markdown(saved.summary, saved.gates, saved.doc)
    notes = [f"WARNING (power): {g.power_warning}" for g in saved.gates if g.power_warning]
    notes += [f"WARNING (training data): {w}" for w in saved.doc.get("warnings", [])]
    return render_text(saved.summary, saved.gates, width=width, color=color) + "".join(f"{n}\n" for n in notes)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tradeoff", description="tradeoff: what did specialising my LLM cost it? The tools around the evaluation.",
        epilog="The evaluation: pytest tests/eval --model ... --adapter ... (docs/evaluation.md). "
               "Each command's own options: tradeoff COMMAND --help.")
    parser.add_argument("--version", action="version", version=f"tradeoff {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (text, _) in TOOLS.items():
        commands.add_parser(name, help=text, add_help=False)  # listed here, dispatched before parsing
    report = commands.add_parser("report", help="re-render a report folder's summary and answer from its "
                                                "tradeoff.json, without a model")
    report.add_argument("directory", type=Path, help="a --report-dir of a finished run, e.g. reports/demo")
    report.add_argument("--format", choices=("text", "markdown"), default="text",
                        help="text: the terminal summary (default); markdown: as tradeoff.md")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status (2 for a usage error, as argparse)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in TOOLS:  # the tool parses (and explains with --help) the rest itself
        return TOOLS[argv[0]][1](argv[1:])
    args = _parser().parse_args(argv)
    try:
        color = sys.stdout.isatty()
        sys.stdout.write(render_report(args.directory, args.format, shutil.get_terminal_size().columns if color else 160,
                                       color))
    except EvalkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
