"""The command line every trainer shares: the same ``train`` flags with the same meaning in
``numpy-cnn``, ``keras-cnn``, ``pytorch-cnn``, ``lightning-cnn`` and ``cnn-compare``.

A framework's ``__main__`` builds its program with ``trainer_command_line`` (``train`` and its
flags; it adds its own commands beside it) and runs ``train`` with ``run_train_command``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from cnn_common.data import Data, training_data
from cnn_common.datasets import DATASETS
from cnn_common.errors import UserError
from cnn_common.framework import EXIT_STATUSES, FrameworkInfo, require
from cnn_common.machine import is_main_process
from cnn_common.memory import check_training
from cnn_common.results import RESULT_FILE, RunResult
from cnn_common.spec import ModelSpec, TrainSpec
from cnn_common.spec_files import apply_overrides, load_spec
from cnn_common.transfer import TransferWeights, transfer_weights
from cnn_common.weights import Weights, init_weights

DEVICES = ("auto", "cpu", "gpu")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, unless its help already says it or there is none to show
    (a flag that is off, an empty list, a value that comes from the spec)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, [], argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def add_spec_arguments(parser: argparse.ArgumentParser, defaults: TrainSpec | None = None) -> None:
    """--spec, --set, --epochs, --batch-size, --seed, --dtype; ``defaults`` are the values
    the help text names (the command's own when it differs from ``TrainSpec()``)."""
    defaults = defaults or TrainSpec()
    parser.add_argument(
        "--spec", type=Path, help="YAML/JSON spec file with model: and train: sections"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one spec field, e.g. conv.0.filters=8 or learning_rate=3e-4 (repeatable)",
    )
    parser.add_argument("--epochs", type=int, help=f"training epochs (default: {defaults.epochs})")
    parser.add_argument(
        "--batch-size", type=int, help=f"images per batch (default: {defaults.batch_size})"
    )
    parser.add_argument(
        "--seed",
        type=int,
        help=f"seed of the initial weights, batch order and split (default: {defaults.seed})",
    )
    parser.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        help=f"compute dtype (default: {defaults.dtype})",
    )


def add_data_arguments(parser: argparse.ArgumentParser, default_subset: int | None = None) -> None:
    """--dataset, --data-dir, --subset."""
    parser.add_argument(
        "--dataset",
        default="mnist",
        choices=sorted(DATASETS),
        help="dataset to train on (default: mnist)",
    )
    parser.add_argument(
        "--data-dir",
        help="folder holding <dataset>/<idx files> "
        "(default: $CNN_DATA_DIR, then the cache, then download)",
    )
    parser.add_argument(
        "--subset",
        type=int,
        metavar="N",
        default=default_subset,
        help="train on the first N training images only (quick runs); validation and test "
        f"sets stay whole (default: {default_subset or 'all'})",
    )
    parser.add_argument(
        "--eval-subset",
        type=int,
        metavar="N",
        help="evaluate on the first N validation and N test images only (default: all)",
    )


def add_train_arguments(parser: argparse.ArgumentParser, default_init: str = "native") -> None:
    """Everything a ``train`` command takes: spec, data, --out, --resume, --init, --init-from."""
    add_spec_arguments(parser)
    add_data_arguments(parser)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue a killed run from its newest checkpoint in --out",
    )
    parser.add_argument(
        "--init",
        choices=["shared", "native"],
        default=default_init,
        help="initial weights: shared = cnn_common's canonical Glorot-uniform set, "
        f"native = the framework's own initialisers (default: {default_init})",
    )
    init_from_argument(parser)


def init_from_argument(parser: argparse.ArgumentParser) -> None:
    """``--init-from RUN``: transfer learning (``cnn_common.transfer``)."""
    parser.add_argument(
        "--init-from",
        metavar="RUN",
        help="start from a trained run (its folder or its weights.safetensors): every layer "
        "whose name and shapes match is loaded, batchnorm statistics included; the others "
        "and logits start from the shared initial weights",
    )


def add_trainer_command(
    commands: argparse._SubParsersAction, framework: str, description: str
) -> argparse.ArgumentParser:
    """The ``train`` subcommand of a framework's command line, with the shared flags."""
    parser = commands.add_parser(
        "train",
        help="train, evaluate on the test set and write the run record",
        description=description,
        formatter_class=HelpFormatter,
    )
    add_train_arguments(parser)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs") / framework,
        help="output folder: run.json, weights.safetensors, checkpoints/",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a finished run already in --out",
    )
    add_device_arguments(
        parser, "processes (CPU) or GPUs to train on with DDP (lightning and pytorch)"
    )
    parser.add_argument("--quiet", action="store_true", help="print no progress")
    return parser


def add_device_arguments(parser: argparse.ArgumentParser, devices_help: str) -> None:
    """``--device`` (where to train) and ``--devices`` (how many processes or GPUs), as every
    trainer and ``cnn-compare run`` take them."""
    parser.add_argument("--device", choices=DEVICES, default="auto", help="where to train")
    parser.add_argument("--devices", type=int, default=1, help=devices_help)


class CommandLine(NamedTuple):
    """A framework's program, as ``trainer_command_line`` builds it."""

    parser: argparse.ArgumentParser  # the program: ``numpy-cnn``, ...
    commands: argparse._SubParsersAction  # where the framework adds its other commands
    train: argparse.ArgumentParser  # the ``train`` command, for flags of the framework's own


def trainer_command_line(
    prog: str, description: str, framework: str, train_description: str
) -> CommandLine:
    """The program ``prog`` with its ``train`` command (the flags every trainer shares; runs
    go to ``runs/<framework>`` by default); both help texts end with the exit statuses."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=EXIT_STATUSES)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = add_trainer_command(commands, framework, train_description)
    train.epilog = EXIT_STATUSES
    return CommandLine(parser, commands, train)


def specs_from_args(args: argparse.Namespace) -> tuple[ModelSpec, TrainSpec]:
    """The spec file (or defaults), then --set overrides, then the single-value flags."""
    model, train = load_spec(args.spec) if args.spec else (ModelSpec(), TrainSpec())
    model, train = apply_overrides(model, train, args.overrides)
    changes = {
        name: getattr(args, name)
        for name in ("epochs", "batch_size", "seed", "dtype")
        if getattr(args, name, None) is not None
    }
    return model, dataclasses.replace(train, **changes)


def data_from_args(args: argparse.Namespace, train: TrainSpec) -> Data:
    """Load, split and scale the dataset the flags name (a training subset with --subset)."""
    return training_data(
        args.dataset,
        train,
        root=args.data_dir,
        subset_size=args.subset,
        eval_size=args.eval_subset,
    )


def init_from_args(args: argparse.Namespace, model: ModelSpec, train: TrainSpec) -> Weights | None:
    """A trained run's layers in the shared initial weights for --init-from
    (``TransferWeights``), the shared initial weights for --init shared, else None (the
    framework initialises)."""
    if getattr(args, "init_from", None):
        return transfer_weights(model, train, args.init_from)
    if args.init == "shared":
        return init_weights(model, train.seed, train.dtype)
    return None


def train_from_args(args: argparse.Namespace, train: Callable[..., RunResult]) -> RunResult:
    """Run a framework's ``train`` as a ``train`` subcommand's flags say; print where it went."""
    model_spec, train_spec = specs_from_args(args)
    out = Path(args.out)
    if args.devices < 1:
        raise UserError(f"--devices must be at least 1, got {args.devices}", "use --devices 1+")
    if (out / RESULT_FILE).is_file() and not (args.resume or args.overwrite):
        raise UserError(
            f"{out} already holds a finished run ({RESULT_FILE})",
            "pass --resume to extend it (e.g. with more --epochs), --overwrite to replace it, "
            "or choose another --out",
        )
    start = init_from_args(args, model_spec, train_spec)  # a bad --init-from: before the data
    if isinstance(start, TransferWeights) and not args.quiet and is_main_process():
        print(start.plan.describe(), flush=True)
    data = data_from_args(args, train_spec)
    result = train(
        model_spec,
        train_spec,
        data,
        out,
        init_weights=start,
        resume=args.resume,
        device=args.device,
        progress=not args.quiet,
        devices=args.devices,
    )
    if not args.quiet and is_main_process():  # DDP runs this in every process
        print(
            f"{result.framework} ({result.backend}): test accuracy {result.test_accuracy:.4f}, "
            f"test loss {result.test_loss:.4f}, {result.wall_time_s:.1f} s -> {out}"
        )
    return result


def run_train_command(args: argparse.Namespace, info: FrameworkInfo) -> int:
    """Run the ``train`` command of ``info``'s program; returns its exit status (0).

    ``info.requires`` is checked first (a missing framework gets the pip command, not a
    ``ModuleNotFoundError``). The package's ``train`` is imported when it is called: after the
    flags and the data are checked, so bad input is refused without waiting for a framework
    to load.
    """
    require(info)
    model_spec, train_spec = specs_from_args(args)
    # before the data and the initial weights: a spec that cannot fit allocates nothing
    check_training(info, model_spec, train_spec, max(args.devices, 1))

    def train(*positional: Any, **keywords: Any) -> RunResult:
        return importlib.import_module(info.package).train(*positional, **keywords)

    train_from_args(args, train)
    return 0
