"""``keras-cnn train``: train the Keras CNN from the command line.

The arguments are parsed, and ``KERAS_BACKEND`` set from ``--backend``, before keras is
imported: Keras reads its backend once, on first import.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from cnn_common.cli import add_trainer_command, train_from_args
from cnn_common.errors import UserError, run_cli
from cnn_common.framework import EXIT_STATUSES, require
from keras_cnn.framework import BY_BACKEND

PROG = "keras-cnn"
BACKENDS = {"tensorflow": "tensorflow", "torch": "torch", "jax": "jax"}  # backend -> its package


def make_parser() -> argparse.ArgumentParser:
    """The command line: ``train`` with the shared flags, plus ``--backend``."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="The cnn-rosetta CNN in Keras 3.", epilog=EXIT_STATUSES
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = add_trainer_command(
        commands, "keras", "Train the Keras CNN with model.fit and write its run record."
    )
    train.add_argument(
        "--backend",
        choices=sorted(BACKENDS),
        default=os.environ.get("KERAS_BACKEND", "tensorflow"),
        help="Keras backend ($KERAS_BACKEND when set)",
    )
    train.epilog = EXIT_STATUSES
    return parser


def select_backend(backend: str) -> None:
    """Set ``KERAS_BACKEND``; raise ``FrameworkMissingError`` when its package is missing."""
    if backend not in BACKENDS:  # only a default taken from $KERAS_BACKEND can get here
        raise UserError(
            f"unsupported Keras backend {backend!r}", f"use --backend {' | '.join(BACKENDS)}"
        )
    require(dataclasses.replace(BY_BACKEND[backend], requires=("keras", BACKENDS[backend])))
    if "keras" in sys.modules and sys.modules["keras"].backend.backend() != backend:
        raise UserError(
            f"keras is already imported with another backend than {backend!r}",
            "run keras-cnn in a fresh process",
        )
    os.environ["KERAS_BACKEND"] = backend


def _main(argv: list[str] | None) -> int:
    """Parse, pick the backend, then import keras and train."""
    args = make_parser().parse_args(argv)
    select_backend(args.backend)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before any backend looks for a GPU
    import keras_cnn

    # The framework is imported when train is first called: after the flags and the data
    # are checked, so bad input is refused without waiting for it.
    train_from_args(args, lambda *a, **k: keras_cnn.train(*a, **k))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console entry point: user errors print ``keras-cnn: error: ...`` and exit 2."""
    return run_cli(lambda: _main(argv), PROG, argv)


if __name__ == "__main__":
    raise SystemExit(main())
