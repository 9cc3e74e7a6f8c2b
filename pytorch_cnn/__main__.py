"""``pytorch-cnn train``: the command line of the plain PyTorch CNN."""

from __future__ import annotations

import argparse

from cnn_common.cli import add_trainer_command, train_from_args
from cnn_common.errors import run_cli
from cnn_common.framework import EXIT_STATUSES, require
from pytorch_cnn.framework import FRAMEWORK

PROG = "pytorch-cnn"


def make_parser() -> argparse.ArgumentParser:
    """The command line: ``train`` with the flags every trainer shares."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="The cnn-rosetta CNN in plain PyTorch.", epilog=EXIT_STATUSES
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = add_trainer_command(
        commands, "pytorch", "Train the plain PyTorch CNN and write its run record."
    )
    train.epilog = EXIT_STATUSES
    return parser


def _main(argv: list[str] | None) -> int:
    args = make_parser().parse_args(argv)
    require(FRAMEWORK)
    import pytorch_cnn

    # The framework is imported when train is first called: after the flags and the data
    # are checked, so bad input is refused without waiting for it.
    train_from_args(args, lambda *a, **k: pytorch_cnn.train(*a, **k))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``pytorch-cnn``: user errors print ``pytorch-cnn: error: ...`` and exit 2."""
    return run_cli(lambda: _main(argv), PROG, argv)


if __name__ == "__main__":
    raise SystemExit(main())
