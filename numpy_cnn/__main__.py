"""``numpy-cnn train ...`` and ``numpy-cnn demo forward|conv``: a thin layer over the package."""

from __future__ import annotations

import argparse
from pathlib import Path

from cnn_common.cli import add_train_arguments, data_from_args, init_from_args, specs_from_args
from cnn_common.errors import run_cli

PROG = "numpy-cnn"


def make_parser() -> argparse.ArgumentParser:
    """The command line: ``train`` with the shared flags, ``demo forward`` and ``demo conv``."""
    parser = argparse.ArgumentParser(prog=PROG, description="A CNN from scratch in NumPy.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train on MNIST-style data, write run.json")
    add_train_arguments(train)
    train.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    demo = commands.add_parser("demo", help="walk-throughs that print and draw what they show")
    demo.add_argument("which", choices=["forward", "conv"])
    demo.add_argument("--out", type=Path, default=Path("demo"), help="folder for the PNGs")
    demo.add_argument("--dataset", default="mnist", help="dataset of the digit (demo conv)")
    demo.add_argument("--data-dir", help="folder holding <dataset>/<idx files>")
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
    from numpy_cnn.train import train

    model_spec, train_spec = specs_from_args(args)
    data = data_from_args(args, train_spec)
    out = args.out or Path("runs") / "numpy"
    train(
        model_spec,
        train_spec,
        data,
        out,
        init_weights=init_from_args(args, model_spec, train_spec),
        resume=args.resume,
        progress=not args.quiet,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``numpy-cnn``: user errors print ``numpy-cnn: error: ...`` and exit 2."""
    return run_cli(lambda: _main(argv), PROG)


if __name__ == "__main__":
    raise SystemExit(main())
