"""``lightning-cnn``: ``train`` with the flags every trainer shares, and the LightningCLI.

- ``lightning-cnn train [--spec FILE] [--epochs N] [--out DIR] [--resume] ...``: the contract's
  ``train``, writing the run record ``compare`` reads (the same flags as ``numpy-cnn train``).
- ``lightning-cnn fit | validate | test | predict [--config FILE] [--print_config] ...``:
  the LightningCLI (``lightning_cnn.cli``), for Lightning's own configuration files.
"""

from __future__ import annotations

import argparse
import sys

from cnn_common.cli import run_train_command, trainer_command_line
from cnn_common.errors import run_cli
from cnn_common.framework import require
from lightning_cnn.framework import FRAMEWORK

PROG = "lightning-cnn"
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


def make_parser() -> argparse.ArgumentParser:
    """``train``, and the LightningCLI's subcommands listed (they parse their own options)."""
    command_line = trainer_command_line(
        PROG,
        "The cnn-rosetta CNN with PyTorch Lightning. `train` takes the flags every cnn-rosetta "
        "trainer shares and writes the run record; fit, validate, test and predict are the "
        "LightningCLI (see `lightning-cnn fit --help`).",
        "lightning",
        "Train LitCNN with a Trainer; write its run record.",
    )
    for name in LIGHTNING_COMMANDS:
        command_line.commands.add_parser(
            name, help=f"LightningCLI {name} (options: lightning-cnn {name} --help)", add_help=False
        )
    return command_line.parser


def _main(argv: list[str] | None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] and args[0] in LIGHTNING_COMMANDS:
        require(FRAMEWORK)
        from lightning_cnn.cli import check_checkpoint_argument, cli_main

        check_checkpoint_argument(args)
        # None: LightningCLI reads sys.argv itself (as DDP's re-launched processes do).
        cli_main(None if argv is None else args)
        return 0
    return run_train_command(make_parser().parse_args(args), FRAMEWORK)


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print ``lightning-cnn: error: ...`` and exit 2."""
    return run_cli(lambda: _main(argv), PROG, argv)


if __name__ == "__main__":
    sys.exit(main())
