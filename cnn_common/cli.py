"""Command-line options every trainer shares, so ``numpy-cnn``, ``keras-cnn`` and ``compare``
accept the same flags with the same meaning."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from cnn_common.data import Data, training_data
from cnn_common.spec import ModelSpec, TrainSpec, apply_overrides, load_spec
from cnn_common.weights import Weights, init_weights


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    """--spec, --set, --epochs, --batch-size, --seed, --dtype."""
    parser.add_argument("--spec", type=Path, help="YAML/JSON spec file (model and train parts)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec field, e.g. conv.0.filters=8",
    )
    parser.add_argument("--epochs", type=int, help="training epochs (default 5)")
    parser.add_argument("--batch-size", type=int, help="batch size (default 128)")
    parser.add_argument("--seed", type=int, help="seed of init, batch order, split (default 0)")
    parser.add_argument("--dtype", choices=["float32", "float64"], help="compute dtype")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """--dataset, --data-dir, --subset."""
    parser.add_argument("--dataset", default="mnist", help="mnist | fashion-mnist")
    parser.add_argument(
        "--data-dir",
        help="folder holding <dataset>/<idx files> (default: $CNN_DATA_DIR, cache, download)",
    )
    parser.add_argument(
        "--subset", type=int, metavar="N", help="use only the first N training images (quick runs)"
    )


def add_train_arguments(parser: argparse.ArgumentParser, default_init: str = "native") -> None:
    """Everything a ``train`` command takes: spec, data, --out, --resume, --init."""
    add_spec_arguments(parser)
    add_data_arguments(parser)
    parser.add_argument("--out", type=Path, help="output folder (default runs/<framework>)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue a killed run from its last checkpoint in --out",
    )
    parser.add_argument(
        "--init",
        choices=["shared", "native"],
        default=default_init,
        help="shared: cnn_common's Glorot init; native: the framework's own",
    )


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
    """Load, split and scale the dataset the flags name (a subset with --subset)."""
    return training_data(args.dataset, train, root=args.data_dir, subset_size=args.subset)


def init_from_args(args: argparse.Namespace, model: ModelSpec, train: TrainSpec) -> Weights | None:
    """Shared initial weights for --init shared, else None (the framework initialises)."""
    if args.init == "shared":
        return init_weights(model, train.seed, train.dtype)
    return None
