"""``pytorch-cnn train``: the command line of the plain PyTorch CNN."""

from __future__ import annotations

import argparse

from cnn_common.cli import add_trainer_command, train_from_args
from cnn_common.errors import run_cli

PROG = "pytorch-cnn"


def make_parser() -> argparse.ArgumentParser:
    """The command line: ``train`` with the flags every trainer shares."""
    parser = argparse.ArgumentParser(prog=PROG, description="The cnn-rosetta CNN in plain PyTorch.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_trainer_command(
        commands, "pytorch", "Train the plain PyTorch CNN and write its run record."
    )
    return parser


def _main(argv: list[str] | None) -> int:
    args = make_parser().parse_args(argv)
    import pytorch_cnn

    train_from_args(args, pytorch_cnn.train)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``pytorch-cnn``: user errors print ``pytorch-cnn: error: ...`` and exit 2."""
    return run_cli(lambda: _main(argv), PROG, argv)


if __name__ == "__main__":
    raise SystemExit(main())
