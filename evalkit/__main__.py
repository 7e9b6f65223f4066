"""``python -m evalkit <command>``: ``demo`` runs the whole story (train, evaluate, answer); the data
and scoring tools are ``python -m evalkit.data`` and ``python -m evalkit.spider_score``."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    if argv[0] != "demo":
        print(f"error: unknown command {argv[0]!r}. Fix: use 'python -m evalkit demo' (see --help).", file=sys.stderr)
        return 2
    from evalkit.demo import main as demo

    return demo(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
