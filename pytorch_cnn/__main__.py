"""``pytorch-cnn train``: the command line of the plain PyTorch CNN."""

from __future__ import annotations

import argparse

from cnn_common.cli import run_train_command, trainer_command_line
from cnn_common.errors import run_cli
from pytorch_cnn.framework import FRAMEWORK

PROG = "pytorch-cnn"


def make_parser() -> argparse.ArgumentParser:
    """The command line: ``train`` with the flags every trainer shares."""
    return trainer_command_line(
        PROG,
        "The cnn-rosetta CNN in plain PyTorch.",
        "pytorch",
        "Train the plain PyTorch CNN and write its run record.",
    ).parser


def _main(argv: list[str] | None) -> int:
    return run_train_command(make_parser().parse_args(argv), FRAMEWORK)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``pytorch-cnn``: user errors print ``pytorch-cnn: error: ...`` and exit 2."""
    return run_cli(lambda: _main(argv), PROG, argv)


if __name__ == "__main__":
    raise SystemExit(main())
