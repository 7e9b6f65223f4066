"""``python -m training --config training/configs/<name>.yaml [--resume]``, and
``python -m training sweep --config C --set lora.r=8,16 --set trainer.learning_rate=2e-4,5e-5 [--out DIR]``.

The config is validated before anything heavy is imported, so a typo costs a second, not a model load.
Errors a user can fix (config, data, model loading) print one message and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys

from evalkit.errors import EvalkitError
from training.config import load_config


def sweep_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m training sweep",
                                     description="Train a grid of configurations and compare their adapters against "
                                                 "the base and each other in one evaluation run.")
    parser.add_argument("--config", required=True, help="the training config every point starts from; its "
                        "evaluation: block sets the suites, samples and gates of the comparison")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=V1,V2",
                        help="a key and its values (repeatable; the grid is every combination)")
    parser.add_argument("--out", help="the sweep's folder (default: runs/sweep-<config name>)")
    args = parser.parse_args(argv)
    try:
        from training.sweep import run_sweep

        run_sweep(args.config, args.set, args.out)
    except EvalkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sweep"]:
        return sweep_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m training",
                                     description="Fine-tune a LoRA or QLoRA adapter on Spider train from a config file.")
    parser.add_argument("--config", required=True, help="YAML or JSON training config (see training/configs/)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in the config's output_dir from its last checkpoint")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        if config.sweep:
            raise EvalkitError(f"{args.config} is a sweep file (its sweep: block lists {', '.join(config.sweep)}). "
                               f"Fix: run python -m training sweep --config {args.config}, or remove the sweep: block "
                               "to train one configuration.")
        from training.train import train

        train(config, args.config, resume=args.resume)
    except EvalkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
