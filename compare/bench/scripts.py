"""What the scripts in ``benchmarks/`` share: their command-line options and the measuring
that writes ``<out>/<script>/bench.json`` and prints the tables (``cnn-compare bench``'s code)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnn_common.files import atomic_write_json
from cnn_common.spec import ModelSpec, TrainSpec
from cnn_common.spec_files import load_spec
from compare.bench.measure import (
    BenchOptions,
    Variant,
    bench_result,
    measure,
    timing_fields,
    variant_label,
)
from compare.bench.tables import phase_table, table
from compare.engine.layout import BENCH_FILE
from compare.engine.lock import FolderLock

__all__ = ["Variant", "script_measure", "script_parser"]


def script_parser(description: str, train_images: int, processes: int) -> argparse.ArgumentParser:
    """The options every script in ``benchmarks/`` takes, with its own defaults."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--train-images", type=int, default=train_images, help="training images per epoch"
    )
    parser.add_argument(
        "--processes", type=int, default=processes, help="fresh processes per variant"
    )
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per process")
    parser.add_argument(
        "--infer-images", type=int, default=10000, help="test images timed for inference"
    )
    parser.add_argument(
        "--phase-steps", type=int, default=30, help="steps timed phase by phase (0: none)"
    )
    parser.add_argument("--threads", type=int, help="CPU threads per process (None: all)")
    parser.add_argument("--data-dir", help="folder holding mnist/ (None: $CNN_DATA_DIR)")
    parser.add_argument(
        "--spec", type=Path, help="YAML/JSON spec file to measure (None: the seed model)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/benchmarks"), help="results under OUT/<script>/"
    )
    return parser


def script_measure(
    args: argparse.Namespace, variants: Sequence[Variant], name: str
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Measure ``variants`` as a script's arguments say, write ``<out>/<name>.json``; return
    what ``bench_result`` returns and its rows by variant label."""
    timing = timing_fields(args, args.epochs, "--epochs")
    model_spec, train_spec = load_spec(args.spec) if args.spec else (ModelSpec(), TrainSpec())
    options = BenchOptions(
        variants=tuple(variants),
        model_spec=model_spec,
        train_spec=train_spec,
        data_dir=args.data_dir,
        **timing,
        out=args.out / name,
    )
    with FolderLock(options.out):
        records = measure(options)
    result = bench_result(options, records)
    atomic_write_json(options.out / BENCH_FILE, result)
    rows = {variant_label(row): row for row in result["rows"]}
    print(table(result["rows"]))
    if args.phase_steps:
        print(phase_table(result["rows"]))
    return result, rows
