"""``keras-cnn train``: train the Keras CNN from the command line.

The arguments are parsed, and ``KERAS_BACKEND`` set from ``--backend``, before keras is
imported: Keras reads its backend once, on first import.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from cnn_common.cli import run_train_command, trainer_command_line
from cnn_common.errors import UserError, run_cli
from cnn_common.framework import require
from keras_cnn.framework import BACKEND_TABLE, BY_BACKEND, DEFAULT_BACKEND

PROG = "keras-cnn"
BACKENDS = {backend: row.module for backend, row in BACKEND_TABLE.items()}  # -> what it needs


def make_parser() -> argparse.ArgumentParser:
    """The command line: ``train`` with the shared flags, plus ``--backend``."""
    command_line = trainer_command_line(
        PROG,
        "The cnn-rosetta CNN in Keras 3.",
        "keras",
        "Train the Keras CNN with model.fit and write its run record.",
    )
    command_line.train.add_argument(
        "--backend",
        choices=sorted(BACKENDS),
        default=os.environ.get("KERAS_BACKEND", DEFAULT_BACKEND),
        help="Keras backend ($KERAS_BACKEND when set)",
    )
    return command_line.parser


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
    return run_train_command(args, BY_BACKEND[args.backend])


def main(argv: list[str] | None = None) -> int:
    """Console entry point: user errors print ``keras-cnn: error: ...`` and exit 2."""
    return run_cli(lambda: _main(argv), PROG, argv)


if __name__ == "__main__":
    raise SystemExit(main())
