"""``keras-cnn train``: train the Keras CNN from the command line.

The arguments are parsed, and ``KERAS_BACKEND`` set from ``--backend``, before keras is
imported: Keras reads its backend once, on first import.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from cnn_common.cli import add_train_arguments, data_from_args, init_from_args, specs_from_args
from cnn_common.errors import FrameworkMissingError, UserError, run_cli

PROG = "keras-cnn"
BACKENDS = {"tensorflow": "tensorflow", "torch": "torch", "jax": "jax"}  # backend -> module


def make_parser() -> argparse.ArgumentParser:
    """The command line: ``train`` with the shared flags, plus ``--backend`` and ``--device``."""
    parser = argparse.ArgumentParser(prog=PROG, description="The cnn-rosetta CNN in Keras 3.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train, evaluate and write the run record")
    add_train_arguments(train)
    train.add_argument(
        "--backend",
        choices=sorted(BACKENDS),
        default=os.environ.get("KERAS_BACKEND", "tensorflow"),
        help="Keras backend (default: $KERAS_BACKEND or tensorflow)",
    )
    train.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    train.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    return parser


def select_backend(backend: str) -> None:
    """Set ``KERAS_BACKEND``; raise ``FrameworkMissingError`` when its package is missing."""
    if backend not in BACKENDS:  # only a default taken from $KERAS_BACKEND can get here
        raise UserError(
            f"unsupported Keras backend {backend!r}", f"use --backend {' | '.join(BACKENDS)}"
        )
    if importlib.util.find_spec("keras") is None:
        raise FrameworkMissingError("keras is not installed", 'pip install "cnn-rosetta[keras]"')
    if importlib.util.find_spec(BACKENDS[backend]) is None:
        raise FrameworkMissingError(
            f"the Keras backend {backend!r} needs the {BACKENDS[backend]!r} package, "
            "which is not installed",
            f"pip install {BACKENDS[backend]}, or choose another --backend",
        )
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
    model_spec, train_spec = specs_from_args(args)
    data = data_from_args(args, train_spec)
    from keras_cnn.train import train

    result = train(
        model_spec,
        train_spec,
        data,
        args.out or Path("runs", "keras"),
        init_from_args(args, model_spec, train_spec),
        resume=args.resume,
        device=args.device,
        progress=not args.quiet,
    )
    if not args.quiet:
        print(
            f"{PROG}: {result.backend} backend, test accuracy {result.test_accuracy:.4f}, "
            f"test loss {result.test_loss:.4f}, {result.wall_time_s:.1f} s"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console entry point: user errors print ``keras-cnn: error: ...`` and exit 2."""
    return run_cli(lambda: _main(argv), PROG)


if __name__ == "__main__":
    raise SystemExit(main())
