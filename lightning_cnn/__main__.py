"""``lightning-cnn``: ``train`` with the flags every trainer shares, and the LightningCLI.

- ``lightning-cnn train [--spec FILE] [--epochs N] [--out DIR] [--resume] ...``: the contract's
  ``train``, writing the run record ``compare`` reads (the same flags as ``numpy-cnn train``).
- ``lightning-cnn fit | validate | test | predict [--config FILE] [--print_config] ...``:
  the LightningCLI (``lightning_cnn.cli``), for Lightning's own configuration files.
"""

from __future__ import annotations

import argparse
import sys

from cnn_common.cli import add_trainer_command, train_from_args
from cnn_common.errors import run_cli
from cnn_common.framework import EXIT_STATUSES, require
from lightning_cnn.framework import FRAMEWORK

PROG = "lightning-cnn"
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


def make_parser() -> argparse.ArgumentParser:
    """``train``, and the LightningCLI's subcommands listed (they parse their own options)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="The cnn-rosetta CNN with PyTorch Lightning. `train` takes the flags every "
        "cnn-rosetta trainer shares and writes the run record; fit, validate, test and "
        "predict are the LightningCLI (see `lightning-cnn fit --help`).",
        epilog=EXIT_STATUSES,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = add_trainer_command(
        commands, "lightning", "Train LitCNN with a Trainer; write its run record."
    )
    train.epilog = EXIT_STATUSES
    for name in LIGHTNING_COMMANDS:
        commands.add_parser(
            name, help=f"LightningCLI {name} (options: lightning-cnn {name} --help)", add_help=False
        )
    return parser


def _main(argv: list[str] | None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] and args[0] in LIGHTNING_COMMANDS:
        require(FRAMEWORK)
        from lightning_cnn.cli import check_checkpoint_argument, cli_main

        check_checkpoint_argument(args)
        # None: LightningCLI reads sys.argv itself (as DDP's re-launched processes do).
        cli_main(None if argv is None else args)
        return 0
    parsed = make_parser().parse_args(args)
    require(FRAMEWORK)
    import lightning_cnn

    # The framework is imported when train is first called: after the flags and the data
    # are checked, so bad input is refused without waiting for it.
    train_from_args(parsed, lambda *a, **k: lightning_cnn.train(*a, **k))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print ``lightning-cnn: error: ...`` and exit 2."""
    return run_cli(lambda: _main(argv), PROG, argv)


if __name__ == "__main__":
    sys.exit(main())
