"""``cnn-compare bench``: where the time goes: throughput against the reference framework,
share of the machine's peak, memory and a training step by phase (``compare.bench.measure``
times, ``compare.bench.tables`` formats)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from cnn_common.cli import specs_from_args
from cnn_common.errors import UserError
from cnn_common.files import atomic_write_json
from compare.bench.measure import (
    REFERENCE,
    BenchOptions,
    Variant,
    bench_result,
    measure,
    timing_fields,
)
from compare.bench.tables import busy_warning, describe, phase_table, table
from compare.engine import registry
from compare.engine.layout import BENCH_FILE
from compare.engine.lock import FolderLock
from compare.engine.options import add_arguments, folder_arguments, option_fields

DESCRIPTION = (
    "Time each framework against the plain PyTorch loop (the pytorch framework), every "
    "measurement in a fresh process with the same threads, the frameworks taking turns: "
    "training epochs (after a warm-up epoch), inference, the machine's matrix-multiply peak, "
    "peak memory and a training step by phase (data, forward, backward, optimiser). Medians "
    "over the processes."
)


def run_bench(options: BenchOptions, log: Callable[[str], None] = print) -> int:
    """``cnn-compare bench``: the reference and every framework; print and write the tables."""
    if (options.out / BENCH_FILE).exists() and not options.overwrite:
        raise UserError(
            f"{options.out} already holds a bench result ({BENCH_FILE})",
            "pass --overwrite to replace it, or choose another --out",
        )
    with FolderLock(options.out, log):
        records = measure(options, log)
    result = bench_result(options, records)
    log(f"bench: {describe(result)}")
    log(table(result["rows"]))
    if options.phase_steps:
        log(f"\nwhere a training step's time goes (ms, median of {options.phase_steps} steps):")
        log(phase_table(result["rows"]))
    warning = busy_warning(result["rows"])
    if warning:
        log(f"warning: {warning}")
    atomic_write_json(options.out / BENCH_FILE, result)
    log(f"wrote {options.out / BENCH_FILE}")
    return 0


def configure(parser: argparse.ArgumentParser) -> None:
    """The options of ``cnn-compare bench``."""
    add_arguments(parser)
    parser.add_argument(
        "--train-images", type=int, default=12800, help="images per timed training epoch"
    )
    parser.add_argument(
        "--timed-epochs", type=int, default=1, help="timed epochs per process, after warm-up"
    )
    parser.add_argument(
        "--processes", type=int, default=3, help="fresh processes per framework (medians)"
    )
    parser.add_argument(
        "--infer-images", type=int, default=10000, help="test images per inference (0: none)"
    )
    parser.add_argument(
        "--phase-steps", type=int, default=30, help="steps timed by phase (0: none)"
    )
    parser.add_argument("--threads", type=int, help="CPU threads per framework (default: all)")
    folder_arguments(
        parser, Path("runs/bench"), "output folder", "replace a bench result already in --out"
    )


def main(args: argparse.Namespace) -> int:
    """``cnn-compare bench``: the reference first, then the other frameworks."""
    names = registry.parse_frameworks(args.frameworks)
    model, train = specs_from_args(args)
    timing = timing_fields(args, args.timed_epochs, "--timed-epochs")
    first = [REFERENCE] if REFERENCE else []
    timed = [*first, *(n for n in names if n != REFERENCE)]
    return run_bench(
        BenchOptions(
            **option_fields(args, timed, model, train),
            variants=tuple(Variant(n) for n in timed),
            **timing,
        )
    )
