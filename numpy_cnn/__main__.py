"""``numpy-cnn train | demo``: the command line of the NumPy CNN."""

from __future__ import annotations

import argparse
from pathlib import Path

from cnn_common.cli import (
    HelpFormatter,
    add_data_arguments,
    add_trainer_command,
    train_from_args,
)
from cnn_common.errors import run_cli

PROG = "numpy-cnn"


def make_parser() -> argparse.ArgumentParser:
    """The command line: ``train`` with the shared flags, ``demo forward`` and ``demo conv``."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="The cnn-rosetta CNN from scratch in NumPy."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_trainer_command(commands, "numpy", "Train the NumPy CNN and write its run record.")
    demo = commands.add_parser(
        "demo",
        help="walk-throughs that print and draw what they show",
        formatter_class=HelpFormatter,
    )
    demo.add_argument(
        "which",
        choices=["forward", "conv"],
        help="forward: forward propagation step by step; conv: one image convolved and pooled",
    )
    demo.add_argument("--out", type=Path, default=Path("demo"), help="folder for the PNGs")
    add_data_arguments(demo)
    return parser


def _main(argv: list[str] | None) -> int:
    args = make_parser().parse_args(argv)
    if args.command == "demo":
        from numpy_cnn import demo

        if args.which == "forward":
            demo.forward_demo(args.out)
        else:
            demo.conv_demo(args.out, args.dataset, args.data_dir)
        return 0
    import numpy_cnn

    train_from_args(args, numpy_cnn.train)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``numpy-cnn``: user errors print ``numpy-cnn: error: ...`` and exit 2."""
    return run_cli(lambda: _main(argv), PROG, argv)


if __name__ == "__main__":
    raise SystemExit(main())
