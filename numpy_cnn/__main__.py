"""``numpy-cnn train | demo | gradcheck``: the command line of the NumPy CNN."""

from __future__ import annotations

import argparse
from pathlib import Path

from cnn_common.cli import (
    HelpFormatter,
    add_data_arguments,
    run_train_command,
    trainer_command_line,
)
from cnn_common.errors import UserError, run_cli
from cnn_common.framework import EXIT_STATUSES
from numpy_cnn.framework import FRAMEWORK

PROG = "numpy-cnn"


def make_parser() -> argparse.ArgumentParser:
    """The command line: ``train`` with the shared flags, ``demo forward|conv``, ``gradcheck``."""
    command_line = trainer_command_line(
        PROG,
        "The cnn-rosetta CNN from scratch in NumPy.",
        "numpy",
        "Train the NumPy CNN and write its run record.",
    )
    commands = command_line.commands
    demo = commands.add_parser(
        "demo",
        help="walk-throughs that print and draw what they show",
        formatter_class=HelpFormatter,
    )
    demo.add_argument(
        "which",
        choices=["forward", "conv"],
        help="forward: the CNN's forward pass on one test image, step by step; "
        "conv: one image convolved and pooled",
    )
    demo.add_argument("--out", type=Path, default=Path("demo"), help="folder for the PNGs")
    add_data_arguments(demo)
    weights = demo.add_mutually_exclusive_group()
    weights.add_argument(
        "--weights",
        type=Path,
        help="forward: a run's weights.safetensors (with its spec) "
        "(default: the seed model's canonical initial weights of seed 0)",
    )
    weights.add_argument(
        "--spec", type=Path, help="forward: a YAML/JSON spec file (default: the seed model)"
    )
    demo.add_argument("--index", type=int, default=0, help="forward: which test image (default: 0)")
    gradcheck = commands.add_parser(
        "gradcheck",
        help="backprop of every layer and of the network against finite differences",
        description="Check every hand-written backward pass (conv, grouped and depthwise conv, "
        "max- and average pooling, global average pooling, batchnorm in training and "
        "evaluation mode, add, activations, dense, dropout, the loss) and the whole network "
        "(batchnorm in training mode) against central finite differences in float64; exit 1 "
        "if any check fails.",
        formatter_class=HelpFormatter,
    )
    gradcheck.add_argument(
        "--seed", type=int, default=0, help="seed of the random inputs (default: 0)"
    )
    gradcheck.add_argument(
        "--samples", type=int, default=20, help="entries checked per tensor of the network"
    )
    gradcheck.add_argument(
        "--spec",
        type=Path,
        action="append",
        help="a YAML/JSON spec file whose network is checked (repeatable; default: the seed model)",
    )
    for command in commands.choices.values():
        command.epilog = EXIT_STATUSES
    return command_line.parser


def _main(argv: list[str] | None) -> int:
    args = make_parser().parse_args(argv)
    if args.command == "demo":
        from numpy_cnn import demo

        if args.which == "forward":
            from cnn_common.spec_files import load_spec

            demo.forward_demo(
                args.out,
                spec=load_spec(args.spec)[0] if args.spec else None,
                weights_file=args.weights,
                dataset=args.dataset,
                data_dir=args.data_dir,
                index=args.index,
            )
        else:
            demo.conv_demo(args.out, args.dataset, args.data_dir)
        return 0
    if args.command == "gradcheck":
        from numpy_cnn import gradcheck

        if args.samples < 1:
            raise UserError(f"--samples must be at least 1, got {args.samples}", "use --samples 1+")
        from cnn_common.spec_files import load_spec

        specs = {path.stem: load_spec(path)[0] for path in args.spec or ()}
        checks = gradcheck.run_checks(args.seed, args.samples, specs or None)
        print(*gradcheck.report(checks), sep="\n")
        return 0 if all(check.ok for check in checks) else 1
    return run_train_command(args, FRAMEWORK)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``numpy-cnn``: user errors print ``numpy-cnn: error: ...`` and exit 2."""
    return run_cli(lambda: _main(argv), PROG, argv)


if __name__ == "__main__":
    raise SystemExit(main())
