"""What the commands that train share: one set of options, one check of the results folder,
and the command-line options that fill them.

``Options`` holds what ``run``, ``ablate``, ``parity`` and ``bench`` all take (the
frameworks, the specs, the data, the folder); ``SweepOptions`` adds what ``run`` and
``ablate``, which train many runs, take besides. Each command's own options extend them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cnn_common.cli import add_data_arguments, add_spec_arguments
from cnn_common.data import check_image_count, load_dataset
from cnn_common.errors import SpecError, UserError
from cnn_common.files import atomic_write_json
from cnn_common.spec import ModelSpec, TrainSpec, spec_from_dict, spec_to_dict
from compare.engine import registry
from compare.engine.executors import EXECUTORS
from compare.engine.jobs import Job
from compare.engine.layout import CONFIG_FILE, RESULT_FILE, RUNS_DIR

PROG = "cnn-compare"

JobT = TypeVar("JobT", bound=Job)
OptionsT = TypeVar("OptionsT")


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

    def job(self, kind: type[JobT], framework: str, out: Path, **fields: Any) -> JobT:
        """A job of ``kind`` for ``framework`` into ``out``, on these options' specs and
        data; ``fields`` are the kind's own, and a ``model_spec`` or ``train_spec`` there
        (another seed) replaces the options' one."""
        shared = {
            "model_spec": self.model_spec,
            "train_spec": self.train_spec,
            "dataset": self.dataset,
            "data_dir": self.data_dir,
        }
        return kind.create(framework=framework, out=out, **{**shared, **fields})


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


# Saved with a folder's configuration, but deciding no result: --resume may change them (the
# equivalence margins, compare.stats.margins).
ANALYSIS_KEYS = ("margin",)


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
    return in_this_version(config)


def in_this_version(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with its spec as this version writes it: a spec field added since the folder
    was written takes its default, so the folder resumes and compares as before. (The
    defaults are what earlier versions did on a CPU; on a GPU they left TF32 and determinism to
    each library.) A spec this version cannot read stays as written."""
    if not isinstance(config.get("model"), dict) or not isinstance(config.get("train"), dict):
        return config
    try:
        model, train = spec_from_dict({"model": config["model"], "train": config["train"]})
    except (SpecError, TypeError):
        return config
    return {**config, **spec_to_dict(model, train)}


def check_out(
    folder: Path,
    config: dict[str, Any],
    *,
    resume: bool,
    overwrite: bool,
    different: str = "results of a different configuration",
    existing: str = "results",
    may_change: tuple[str, ...] = (),
) -> None:
    """Refuse to mix results of different configurations in ``folder``; save ``config``.

    With ``resume`` the saved configuration must be ``config`` but for ``ANALYSIS_KEYS`` and
    ``may_change`` (a run whose seeds grow); without it the folder must hold no finished run
    (``different`` and ``existing`` name what it holds in the message); ``overwrite`` skips
    both checks.
    """
    path = folder / CONFIG_FILE
    if path.exists() and not overwrite:
        if resume:
            old, new = read_config(path), json.loads(json.dumps(config))
            for key in (*ANALYSIS_KEYS, *may_change):
                old.pop(key, None)
                new.pop(key, None)
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of every command that trains or times the frameworks: --frameworks, the
    spec's (``cnn_common.cli``) and the data's."""
    frameworks_argument(parser)
    add_spec_arguments(parser)
    add_data_arguments(parser)


def folder_arguments(
    parser: argparse.ArgumentParser,
    default: Path,
    what: str,
    overwrite: str,
    resume: str | None = None,
) -> None:
    """--out (``what`` names the folder in its help), --resume for the commands that finish
    a folder's runs (``resume`` is its help), --overwrite (``overwrite`` is its help)."""
    parser.add_argument("--out", type=Path, default=default, help=what)
    if resume:
        parser.add_argument("--resume", action="store_true", help=resume)
    parser.add_argument("--overwrite", action="store_true", help=overwrite)


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


def from_args(cls: type[OptionsT], args: argparse.Namespace, **given: Any) -> OptionsT:
    """The options dataclass ``cls`` of a command: the ``given`` fields, and every other one
    from the parsed option of its name (its default where the command has no such option)."""
    named = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.name not in given and hasattr(args, f.name)
    }
    return cls(**named, **given)


def option_fields(
    args: argparse.Namespace, names: list[str], model: ModelSpec, train: TrainSpec
) -> dict[str, Any]:
    """The ``Options`` fields of a command's parsed options: the frameworks ``names``, the
    specs, the data and the folder."""
    return {
        "frameworks": tuple(names),
        "model_spec": model,
        "train_spec": train,
        "dataset": args.dataset,
        "data_dir": args.data_dir,
        "out": args.out,
        "overwrite": args.overwrite,
    }


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
        **option_fields(args, names, model, train),
        "subset": args.subset,
        "eval_subset": args.eval_subset,
        "resume": args.resume,
        "threads": args.threads,
        "progress": not args.quiet,
        "executor": args.executor,
        "ray_address": args.ray_address,
    }
