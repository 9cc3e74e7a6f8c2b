"""``cnn-compare``: train the frameworks side by side, check their parity, time them, report."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from cnn_common.cli import (
    DEVICES,
    HelpFormatter,
    add_data_arguments,
    add_spec_arguments,
    specs_from_args,
)
from cnn_common.data import check_image_count, load_dataset
from cnn_common.errors import UserError, run_cli
from cnn_common.framework import EXIT_STATUSES
from cnn_common.spec import ModelSpec, TrainSpec, spec_from_dict
from compare import registry
from compare.arms import FACTORS, check_factors
from compare.executors import EXECUTORS, make_executor
from compare.layout import CONFIG_FILE

PROG = "cnn-compare"
HELP = HelpFormatter


def _frameworks_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--frameworks",
        default=",".join(registry.default_names()),
        help=f"comma-separated frameworks, from: {', '.join(registry.frameworks())}",
    )


def _executor_arguments(parser: argparse.ArgumentParser) -> None:
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train one CNN in several frameworks from one spec and one data pipeline, "
        "and show where and why they differ.",
        epilog=EXIT_STATUSES,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="train the frameworks side by side and write a report",
        description="Train every framework (and seed) in a process of its own; write "
        "results.json, history.csv, report.md, report.html and figures/ into --out.",
        formatter_class=HELP,
    )
    _frameworks_argument(run)
    add_spec_arguments(run)
    add_data_arguments(run)
    run.add_argument("--seeds", type=int, default=1, help="train each framework on N seeds")
    run.add_argument(
        "--init",
        choices=["shared", "native"],
        default="shared",
        help="shared: identical starting weights everywhere; native: each framework's own",
    )
    run.add_argument("--device", choices=DEVICES, default="auto", help="where to train")
    run.add_argument(
        "--devices",
        type=int,
        default=1,
        help="processes (CPU) or GPUs each run of lightning and pytorch trains on, with "
        "Lightning's DDP; the other frameworks train on one",
    )
    run.add_argument("--out", type=Path, default=Path("runs/compare"), help="results folder")
    run.add_argument(
        "--resume",
        action="store_true",
        help="finish the run in --out with its saved configuration; finished runs are kept",
    )
    run.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    run.add_argument(
        "--in-process",
        action="store_true",
        help="run the frameworks in this process instead of one process each",
    )
    run.add_argument("--threads", type=int, help="CPU threads per framework (default: all cores)")
    _executor_arguments(run)
    run.add_argument("--quiet", action="store_true", help="no live progress display")

    parity = sub.add_parser(
        "parity",
        help="one set of weights everywhere: where do the numerics part?",
        description="Load the same weights into every framework, take K optimiser steps on "
        "the same batches and compare logits, losses, gradients and updates.",
        formatter_class=HELP,
    )
    _frameworks_argument(parity)
    add_spec_arguments(parity)
    add_data_arguments(parity)
    parity.add_argument("--steps", type=int, default=3, help="optimiser steps to compare")
    parity.add_argument("--out", type=Path, default=Path("runs/parity"), help="output folder")
    parity.add_argument(
        "--overwrite", action="store_true", help="replace a parity result already in --out"
    )
    parity.add_argument(
        "--in-process", action="store_true", help="run every framework in this process"
    )

    bench = sub.add_parser(
        "bench",
        help="where the time goes: throughput, share of the machine's peak, memory, phases",
        description="Time each framework against the plain PyTorch loop (the pytorch "
        "framework), every measurement in a fresh process with the same threads, the "
        "frameworks taking turns: training epochs (after a warm-up epoch), inference, the "
        "machine's matrix-multiply peak, peak memory and a training step by phase (data, "
        "forward, backward, optimiser). Medians over the processes.",
        formatter_class=HELP,
    )
    _frameworks_argument(bench)
    add_spec_arguments(bench)
    add_data_arguments(bench)
    bench.add_argument(
        "--train-images", type=int, default=12800, help="images per timed training epoch"
    )
    bench.add_argument(
        "--timed-epochs", type=int, default=1, help="timed epochs per process, after warm-up"
    )
    bench.add_argument(
        "--processes", type=int, default=3, help="fresh processes per framework (medians)"
    )
    bench.add_argument(
        "--infer-images", type=int, default=10000, help="test images per inference (0: none)"
    )
    bench.add_argument("--phase-steps", type=int, default=30, help="steps timed by phase (0: none)")
    bench.add_argument("--threads", type=int, help="CPU threads per framework (default: all)")
    bench.add_argument("--out", type=Path, default=Path("runs/bench"), help="output folder")
    bench.add_argument(
        "--overwrite", action="store_true", help="replace a bench result already in --out"
    )

    ablate = sub.add_parser(
        "ablate",
        help="which framework default causes a difference, and how much",
        description="Train a baseline with every difference neutralised, then one arm per "
        "factor that turns one default back to each framework's own, on the same seeds; "
        "report each effect with its 95% interval against two noise floors (threads, ulp).",
        formatter_class=HELP,
    )
    _frameworks_argument(ablate)
    ablate.add_argument(
        "--factors",
        default=",".join(FACTORS),
        help="comma-separated factors: init, epsilon, order, padding, and the noise floors "
        "threads and ulp",
    )
    add_spec_arguments(ablate, TrainSpec(epochs=1))
    add_data_arguments(ablate, default_subset=20000)
    ablate.add_argument("--seeds", type=int, default=5, help="seeds per arm (at least 3)")
    ablate.add_argument("--out", type=Path, default=Path("runs/ablate"), help="results folder")
    ablate.add_argument(
        "--resume",
        action="store_true",
        help="finish the ablation in --out with its saved configuration; finished runs are kept",
    )
    ablate.add_argument(
        "--overwrite", action="store_true", help="replace an ablation already in --out"
    )
    ablate.add_argument("--threads", type=int, help="CPU threads per run (default: all cores)")
    _executor_arguments(ablate)
    ablate.add_argument("--quiet", action="store_true", help="no live progress display")

    rosetta = sub.add_parser(
        "rosetta",
        help="the same layer in every framework: their sources side by side",
        description="For each layer kind of the spec (convolution, activation, pooling, "
        "flatten, dense, the loss, the optimiser step), read every framework's own source "
        "with inspect.getsource, each in its own process; write rosetta.json and "
        "rosetta.html into --out.",
        formatter_class=HELP,
    )
    rosetta.add_argument(
        "--frameworks",
        help="comma-separated frameworks (default: the first registered of each package), "
        f"from: {', '.join(registry.frameworks())}",
    )
    rosetta.add_argument("--spec", type=Path, help="YAML/JSON spec file: its layer kinds")
    rosetta.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one spec field (repeatable)",
    )  # fmt: skip
    rosetta.add_argument("--out", type=Path, default=Path("runs/rosetta"), help="output folder")
    rosetta.add_argument(
        "--in-process", action="store_true", help="read every framework in this process"
    )

    report = sub.add_parser(
        "report",
        help="render the report of a results folder again",
        description="Read a results folder (the --out of `cnn-compare run`) and write its "
        "results.json, history.csv, figures/, report.md and report.html again.",
        formatter_class=HELP,
    )
    report.add_argument("dir", type=Path, help="the results folder")

    convert = sub.add_parser(
        "convert",
        help="trained weights in every framework's own file and in ONNX, verified",
        description="Write a run's weights (or a canonical .safetensors file) in each "
        "framework's own format (and ONNX with --onnx), read each file back in its framework "
        "and compare its logits on the first N test images with the source's.",
        formatter_class=HELP,
    )
    convert.add_argument(
        "source", type=Path, help="a run folder (OUT/runs/<framework>-seed<S>) or a weight file"
    )
    convert.add_argument(
        "--to",
        default="all",
        help="comma-separated frameworks, or all (every installed one), from: "
        + ", ".join(registry.frameworks()),
    )
    convert.add_argument("--onnx", action="store_true", help="also write and verify model.onnx")
    convert.add_argument(
        "--out", type=Path, help="output folder (default: SOURCE/converted, or beside the file)"
    )
    convert.add_argument("--images", type=int, default=1000, help="test images to compare on")
    convert.add_argument(
        "--source-framework",
        help="the framework that computes the source's logits (default: the run's own; "
        "for a weight file, the first registered: numpy)",
    )
    convert.add_argument("--dataset", help="the test images' dataset (default: the run's)")
    convert.add_argument("--data-dir", help="folder holding <dataset>/<idx files>")
    for command in sub.choices.values():
        command.epilog = EXIT_STATUSES
    return parser


def _at_least(flag: str, value: int | None, low: int = 1) -> None:
    """Refuse a count flag below ``low`` (None: not given)."""
    if value is not None and value < low:
        raise UserError(f"{flag} must be at least {low}, got {value}", f"use {flag} {low} or more")


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print ``cnn-compare: error: ...`` and return 2."""
    return run_cli(lambda: _main(argv), PROG, argv)


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "convert":
        from compare.convert import ConvertOptions, run_convert

        return run_convert(
            ConvertOptions(
                source=args.source,
                targets=args.to,
                onnx=args.onnx,
                out=args.out,
                images=args.images,
                source_framework=args.source_framework,
                dataset=args.dataset,
                data_dir=args.data_dir,
            )
        )
    if args.command == "report":
        from compare.report import write_outputs

        for line in write_outputs(args.dir):
            print(line)
        return 0
    if args.command == "rosetta":
        from compare.rosetta import default_frameworks, run_rosetta

        names = registry.parse_frameworks(args.frameworks or ",".join(default_frameworks()))
        return run_rosetta(names, *specs_from_args(args), args.out, args.in_process)
    names = registry.parse_frameworks(args.frameworks)
    model, train = specs_from_args(args)
    if args.command == "run":
        return _run(args, names, model, train)
    if args.command == "ablate":
        return _ablate(args, names, model, train)
    if args.command == "parity":
        from compare.parity import ParityOptions, run_parity

        _at_least("--steps", args.steps)
        return run_parity(
            ParityOptions(
                frameworks=tuple(names),
                model_spec=model,
                train_spec=train,
                dataset=args.dataset,
                data_dir=args.data_dir,
                out=args.out,
                steps=args.steps,
                in_process=args.in_process,
                overwrite=args.overwrite,
            )
        )
    from compare.bench import REFERENCE, BenchOptions, Variant, run_bench

    for flag, value, low in (
        ("--train-images", args.train_images, 1),
        ("--timed-epochs", args.timed_epochs, 1),
        ("--processes", args.processes, 1),
        ("--infer-images", args.infer_images, 0),
        ("--phase-steps", args.phase_steps, 0),
        ("--threads", args.threads, 1),
    ):
        _at_least(flag, value, low)
    return run_bench(
        BenchOptions(
            variants=tuple(Variant(n) for n in [REFERENCE, *(n for n in names if n != REFERENCE)]),
            model_spec=model,
            train_spec=train,
            dataset=args.dataset,
            data_dir=args.data_dir,
            out=args.out,
            train_images=args.train_images,
            epochs=args.timed_epochs,
            processes=args.processes,
            infer_images=args.infer_images,
            phase_steps=args.phase_steps,
            threads=args.threads,
            overwrite=args.overwrite,
        )
    )


# What --resume takes from the saved configuration (the options that decide the results).
RESUMED = (
    "frameworks",
    "dataset",
    "init",
    "device",
    "subset",
    "eval_subset",
    "seeds",
    "devices",
)


def _saved_config(args: argparse.Namespace) -> dict[str, Any]:
    """With ``--resume``, the configuration saved in ``--out``; flags that decide the results
    must not be given again (only how to run — threads, progress — may change)."""
    path = args.out / CONFIG_FILE
    if not args.resume or not path.is_file():
        return {}
    from compare.runner import read_config

    saved = read_config(path)
    defaults = _parser().parse_args(["run"])
    given = [
        name
        for name in (*RESUMED, "spec", "overrides", "epochs", "batch_size", "seed", "dtype")
        if getattr(args, name) != getattr(defaults, name)
    ]
    if given:
        flags = {"overrides": "--set"}
        raise UserError(
            f"--resume takes its configuration from {path}; do not give "
            + ", ".join(flags.get(name, f"--{name.replace('_', '-')}") for name in given),
            f"run `{PROG} run --resume --out {args.out}` alone, or start a new --out",
        )
    return saved


def _sweep_fields(
    args: argparse.Namespace, names: list[str], model: ModelSpec, train: TrainSpec
) -> dict[str, Any]:
    """The options ``run`` and ``ablate`` share, once their image counts are checked and the
    data found: missing or corrupt data fails here, once, before any framework starts."""
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


def _run(args: argparse.Namespace, names: list[str], model: ModelSpec, train: TrainSpec) -> int:
    from compare.runner import RunOptions, run

    saved = _saved_config(args)
    if saved:
        names = saved["frameworks"]
        model, train = spec_from_dict({"model": saved["model"], "train": saved["train"]})
        for name in RESUMED[1:]:  # an older folder may lack a newer option: its default
            setattr(args, name, saved.get(name, getattr(args, name)))
    if args.seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {args.seeds}", "use --seeds 1 or more")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}", "use --threads 1+")
    if args.devices < 1:
        raise UserError(f"--devices must be at least 1, got {args.devices}", "use --devices 1+")
    make_executor(args.executor, args.threads, args.in_process, args.ray_address)  # checks
    options = RunOptions(
        **_sweep_fields(args, names, model, train),
        seeds=args.seeds,
        init=args.init,
        device=args.device,
        in_process=args.in_process,
        devices=args.devices,
    )
    status = run(options)
    if status == 2:
        print(f"{PROG}: error: some frameworks could not run; see the report", file=sys.stderr)
    return status


def _ablate(args: argparse.Namespace, names: list[str], model: ModelSpec, train: TrainSpec) -> int:
    from compare.ablate import AblateOptions, run_ablation

    if args.seeds < 3:
        raise UserError(
            f"--seeds must be at least 3 for an ablation, got {args.seeds}",
            "use --seeds 3 or more: fewer give intervals too wide to say anything",
        )
    _at_least("--threads", args.threads)
    if args.epochs is None:
        train = dataclasses.replace(train, epochs=1)
    factors = check_factors(args.factors.split(","))
    fields = _sweep_fields(args, names, model, train)
    return run_ablation(AblateOptions(**fields, factors=factors, seeds=args.seeds))


if __name__ == "__main__":
    sys.exit(main())
