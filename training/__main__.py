"""``python -m training --config training/configs/<name>.yaml [--resume]``.

The config is validated before anything heavy is imported, so a typo costs a second, not a model load.
Errors a user can fix (config, data, model loading) print one message and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys

from evalkit.errors import EvalkitError
from training.config import load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training",
                                     description="Fine-tune a LoRA or QLoRA adapter on Spider train from a config file.")
    parser.add_argument("--config", required=True, help="YAML or JSON training config (see training/configs/)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in the config's output_dir from its last checkpoint")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        from training.train import train

        train(config, args.config, resume=args.resume)
    except EvalkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
