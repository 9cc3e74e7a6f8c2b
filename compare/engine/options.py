"""What the commands that train share: one set of options, one check of the results folder,
and the command-line options that fill them.

``Options`` holds what ``run``, ``ablate``, ``parity`` and ``bench`` all take (the
frameworks, the specs, the data, the folder); ``SweepOptions`` adds what ``run`` and
``ablate``, which train many runs, take besides. Each command's own options extend them.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnn_common.data import check_image_count, load_dataset
from cnn_common.errors import UserError
from cnn_common.files import atomic_write_json
from cnn_common.spec import ModelSpec, TrainSpec
from compare.engine import registry
from compare.engine.executors import EXECUTORS
from compare.engine.layout import CONFIG_FILE, RESULT_FILE, RUNS_DIR

PROG = "cnn-compare"


@dataclass(frozen=True, kw_only=True)
class Options:
    """What every command that trains or times the frameworks was asked."""

    frameworks: tuple[str, ...] = ()
    model_spec: ModelSpec
    train_spec: TrainSpec
    dataset: str = "mnist"
    data_dir: str | None = None  # folder holding <dataset>/ (None: $CNN_DATA_DIR)
    out: Path
    overwrite: bool = False  # replace results already in out
    threads: int | None = None  # CPU threads per worker (None: all cores)


@dataclass(frozen=True, kw_only=True)
class SweepOptions(Options):
    """What the commands that train many runs (``run``, ``ablate``) were asked besides."""

    seeds: int = 1
    subset: int | None = None  # training images (None: all)
    eval_subset: int | None = None  # validation and test images (None: all)
    resume: bool = False  # finish the folder's runs with its saved configuration
    progress: bool = True  # the live display
    executor: str = "local"  # local | ray
    ray_address: str | None = None

    def seed_list(self) -> list[int]:
        return [self.train_spec.seed + i for i in range(self.seeds)]


def read_config(path: Path) -> dict[str, Any]:
    """A results folder's saved configuration; a damaged one raises ``UserError``."""
    try:
        config = json.loads(path.read_text())
    except ValueError as exc:
        config = f"{type(exc).__name__}: {exc}"
    if not isinstance(config, dict):
        raise UserError(
            f"{path} is not a readable run configuration ({config})",
            f"choose another --out, or --overwrite to train every run in {path.parent} again",
        )
    return config


def check_out(
    folder: Path,
    config: dict[str, Any],
    *,
    resume: bool,
    overwrite: bool,
    different: str = "results of a different configuration",
    existing: str = "results",
) -> None:
    """Refuse to mix results of different configurations in ``folder``; save ``config``.

    With ``resume`` the saved configuration must be ``config``; without it the folder must
    hold no finished run (``different`` and ``existing`` name what it holds in the message);
    ``overwrite`` skips both checks.
    """
    path = folder / CONFIG_FILE
    if path.exists() and not overwrite:
        if resume:
            old = read_config(path)
            new = json.loads(json.dumps(config))
            if old != new:
                changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
                raise UserError(
                    f"{folder} holds {different} (differs in: {', '.join(changed)})",
                    "resume with the same options, or choose another --out",
                )
        elif any((folder / RUNS_DIR).rglob(RESULT_FILE)):
            raise UserError(
                f"{folder} already holds {existing}",
                "pass --resume to complete them, --overwrite to replace them, "
                "or choose another --out",
            )
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, config)


def at_least(flag: str, value: int | None, low: int = 1) -> None:
    """Refuse a count flag below ``low`` (None: not given)."""
    if value is not None and value < low:
        raise UserError(f"{flag} must be at least {low}, got {value}", f"use {flag} {low} or more")


def frameworks_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--frameworks",
        default=",".join(registry.default_names()),
        help=f"comma-separated frameworks, from: {', '.join(registry.frameworks())}",
    )


def executor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local: one worker process at a time on this machine; ray: every run a Ray task "
        "(a local Ray instance, or --ray-address's cluster)",
    )
    parser.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="an existing Ray cluster (ray://HOST:10001 or auto); its nodes need the project "
        "installed and the --out folder shared",
    )


def sweep_fields(
    args: argparse.Namespace, names: list[str], model: ModelSpec, train: TrainSpec
) -> dict[str, Any]:
    """The ``SweepOptions`` fields of ``run`` and ``ablate``, once their image counts are
    checked and the data found: missing or corrupt data fails here, once, before any
    framework starts."""
    for flag, value in (("--subset", args.subset), ("--eval-subset", args.eval_subset)):
        if value is not None:
            check_image_count(flag, value)
    load_dataset(args.dataset, root=args.data_dir)
    return {
        "frameworks": tuple(names),
        "dataset": args.dataset,
        "model_spec": model,
        "train_spec": train,
        "out": args.out,
        "data_dir": args.data_dir,
        "subset": args.subset,
        "eval_subset": args.eval_subset,
        "resume": args.resume,
        "overwrite": args.overwrite,
        "threads": args.threads,
        "progress": not args.quiet,
        "executor": args.executor,
        "ray_address": args.ray_address,
    }
