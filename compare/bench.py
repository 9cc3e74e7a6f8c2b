"""``cnn-compare bench`` and the scripts in ``benchmarks/``: timings a user can trust.

Every measurement runs in a fresh worker process (``compare.bench_task``) with the same thread
count, the frameworks taking turns (A, B, A, B, ...) so that a drift of the machine touches
them alike; each figure is the median over the processes. The reference is the ``pytorch``
framework, the plain loop a PyTorch user writes, so a ratio says what a framework costs over
the bare minimum on the same batches.

FLOP/s use ``cnn_common.spec.flops`` (forward, per image); a training step counts as three
forward passes (forward, and a backward of about twice its cost). They are given as a share of
the machine's practical peak, float32 matrix multiplies with the same threads, measured in
every process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnn_common.errors import UserError
from cnn_common.files import atomic_write_json
from cnn_common.phases import LABELS, PHASES
from cnn_common.spec import ModelSpec, TrainSpec, flops
from compare import registry
from compare.jobs import BenchJob
from compare.launch import run_checked
from compare.layout import BENCH_FILE, BENCH_JOBS_DIR, BENCH_RECORD
from compare.lock import FolderLock
from compare.render import md_table
from compare.tables import Table

REFERENCE = "pytorch"  # the plain PyTorch loop


@dataclass(frozen=True)
class Variant:
    """A framework as timed: its name and the defaults handed back to it (``native``)."""

    framework: str
    native: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return label({"framework": self.framework, "native": self.native})

    @property
    def folder(self) -> str:
        return self.framework + "".join(f"-native-{choice}" for choice in self.native)


@dataclass(frozen=True)
class BenchOptions:
    variants: tuple[Variant, ...]
    model_spec: ModelSpec
    train_spec: TrainSpec
    dataset: str = "mnist"
    data_dir: str | None = None
    train_images: int = 12800
    epochs: int = 1  # timed epochs per process, after a warm-up epoch
    processes: int = 3  # fresh processes per variant; figures are medians over them
    infer_images: int = 10000
    phase_steps: int = 30
    threads: int | None = None
    out: Path = Path("runs/bench")
    overwrite: bool = False  # replace a result already in out


def measure(
    options: BenchOptions, log: Callable[[str], None] = print
) -> dict[str, list[dict[str, Any]]]:
    """Every variant in ``options.processes`` fresh processes, taking turns; the records of
    ``compare.bench_task`` by variant label, in process order."""
    for variant in options.variants:
        registry.check_installed(variant.framework)
    records: dict[str, list[dict[str, Any]]] = {v.label: [] for v in options.variants}
    for turn in range(options.processes):
        for variant in options.variants:
            log(f"bench: {variant.label}, process {turn + 1} of {options.processes}")
            job = BenchJob.create(
                model_spec=options.model_spec,
                train_spec=options.train_spec,
                out=options.out / BENCH_JOBS_DIR / f"{variant.folder}-{turn + 1}",
                framework=variant.framework,
                dataset=options.dataset,
                data_dir=options.data_dir,
                train_images=options.train_images,
                epochs=options.epochs,
                infer_images=options.infer_images,
                phase_steps=options.phase_steps,
                native=list(variant.native),
            )
            run_checked(job, threads=options.threads)
            records[variant.label].append(json.loads((job.path / BENCH_RECORD).read_text()))
    return records


def _median(values: Sequence[float]) -> float:
    return float(np.median(values)) if len(values) else float("nan")


def summarise(
    records: list[dict[str, Any]],
    model_spec: ModelSpec,
    reference: dict[str, Any] | None = None,
    reference_records: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One variant's processes in figures: medians over all timed epochs and processes, the
    share of the machine's peak, the largest peak memory, the median of each phase; ratios
    to ``reference`` (another variant's summary) when given, and with ``reference_records``
    (its processes, in the same turns) the median of the turn-by-turn ratios: a process and
    the reference's process of the same turn ran minutes apart at most, so a machine whose
    speed drifts over a longer time moves both alike."""
    first = records[0]
    forward = flops(model_spec)
    epochs = [t for r in records for t in r["epoch_times"]]
    epoch_s = _median(epochs)
    steps = first["steps_per_epoch"]
    peak = _median([r["peak_gflops"] for r in records])
    train_ips = first["train_images"] / epoch_s
    row: dict[str, Any] = {
        "framework": first["framework"],
        "native": first["native"],
        "threads": first["threads"],
        "processes": len(records),
        "epochs": len(epochs),
        "epoch_s": epoch_s,
        "epoch_spread_s": [min(epochs), max(epochs)],
        "step_ms": 1e3 * epoch_s / steps,
        "train_images_per_s": train_ips,
        "train_gflops": 3 * forward * train_ips / 1e9,
        "peak_gflops": peak,
        "train_peak_rss_mib": max(r["train_peak_rss_mib"] for r in records),
        "busy": any(r["load"].get("busy", False) for r in records),
        "other_cores": max(r["load"].get("other_cores", 0.0) for r in records),
        "phases_ms": {
            phase: 1e3 * _median([r["phases"][phase] for r in records if phase in r["phases"]])
            for phase in PHASES
            if any(phase in r["phases"] for r in records)
        },
        "phases_note": first["phases_note"],
    }
    row["train_peak_share"] = row["train_gflops"] / peak
    if first["infer_images"]:
        infer_s = _median([r["infer_s"] for r in records])
        row["infer_images_per_s"] = first["infer_images"] / infer_s
        row["infer_gflops"] = forward * row["infer_images_per_s"] / 1e9
        row["infer_peak_share"] = row["infer_gflops"] / peak
    if reference_records is not None:
        row["paired_time_ratio"] = paired_ratio(records, reference_records)
    if reference is not None:
        row["train_time_ratio"] = epoch_s / reference["epoch_s"]
        if "infer_images_per_s" in row and "infer_images_per_s" in reference:
            row["infer_time_ratio"] = reference["infer_images_per_s"] / row["infer_images_per_s"]
    return row


def paired_ratio(records: list[dict[str, Any]], reference: list[dict[str, Any]]) -> float:
    """The median over turns of one variant's epoch time over the reference's in the same
    turn (each a median over the process's timed epochs)."""
    return _median(
        [
            _median(r["epoch_times"]) / _median(ref["epoch_times"])
            for r, ref in zip(records, reference, strict=False)
        ]
    )


HOG = """
import sys, time
try:
    import torch
    torch.set_num_threads({threads})
    a = torch.randn(1024, 1024)
except ImportError:  # NumPy's BLAS computes on the same cores
    import numpy as np
    a = np.random.default_rng(0).random((1024, 1024), dtype=np.float32)
print("hog", flush=True)
end = time.time() + {seconds}
while time.time() < end:
    a @ a
"""


@contextlib.contextmanager
def cpu_hog(threads: int, seconds: float = 600) -> Iterator[subprocess.Popen]:
    """Another process multiplying matrices on ``threads`` threads (PyTorch's, else NumPy's)
    for the block: a busy machine, to time frameworks under load. Stopped on exit."""
    code = HOG.format(threads=threads, seconds=seconds)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    hog = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    try:
        assert hog.stdout is not None
        hog.stdout.readline()  # "hog": it computes from now on
        yield hog
    finally:
        hog.kill()
        hog.wait()


def same_step_losses(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """Whether two variants' first processes trained to bit-identical per-step losses."""
    return a[0]["step_losses"] == b[0]["step_losses"]


def summary_cells(rows: list[dict[str, Any]]) -> Table:
    """The summary rows as a table's head and cells: one row per variant, as stored; a
    ratio or the inference cells blank where the row has none."""
    head = [
        "framework",
        "train img/s",
        "step ms",
        f"time / {REFERENCE}",
        "GFLOP/s (of peak)",
        "infer img/s",
        f"infer time / {REFERENCE}",
        "infer GFLOP/s (of peak)",
        "peak MiB",
    ]
    lines = []
    for r in rows:
        busy = " (machine busy)" if r["busy"] else ""
        infer = "infer_images_per_s" in r
        lines.append(
            [
                label(r) + busy,
                f"{r['train_images_per_s']:,.0f}",
                f"{r['step_ms']:.2f}",
                f"{r['train_time_ratio']:.2f}x" if "train_time_ratio" in r else "",
                f"{r['train_gflops']:.1f} ({r['train_peak_share']:.0%})",
                f"{r['infer_images_per_s']:,.0f}" if infer else "",
                f"{r['infer_time_ratio']:.2f}x" if "infer_time_ratio" in r else "",
                f"{r['infer_gflops']:.1f} ({r['infer_peak_share']:.0%})" if infer else "",
                f"{r['train_peak_rss_mib']:.0f}",
            ]
        )
    return head, lines


def table(rows: list[dict[str, Any]]) -> str:
    """The summary rows as a Markdown table (what the command prints)."""
    return md_table(*summary_cells(rows))


def phase_cells(rows: list[dict[str, Any]]) -> Table:
    """Milliseconds per step by phase (the phases some row has, in ``PHASES`` order), one row
    per variant, and its note, as a table's head and cells."""
    used = [p for p in PHASES if any(p in r["phases_ms"] for r in rows)]
    head = ["framework", *(LABELS[p] for p in used), "note"]
    lines = [
        [
            label(r),
            *(f"{r['phases_ms'][p]:.2f}" if p in r["phases_ms"] else "" for p in used),
            r["phases_note"],
        ]
        for r in rows
    ]
    return head, lines


def phase_table(rows: list[dict[str, Any]]) -> str:
    """Milliseconds per step by phase, one row per variant, and its note (Markdown)."""
    return md_table(*phase_cells(rows))


def label(row: dict[str, Any]) -> str:
    """How a summary row (or a record) names its variant: the framework, and the defaults
    handed back to it, e.g. ``pytorch (native order)``."""
    native = row["native"]
    return row["framework"] + (f" (native {'+'.join(native)})" if native else "")


def describe(result: dict[str, Any]) -> str:
    """What ``summary``'s ``result`` measured, in one sentence without its full stop."""
    return (
        f"{result['train_images']:,} training images per epoch; medians over "
        f"{result['processes']} fresh process(es) per framework, the frameworks taking turns, "
        f"{result['epochs']} timed epoch(s) each after a warm-up epoch; {result['threads']} "
        f"thread(s); machine peak {result['peak_gflops']:.0f} GFLOP/s (float32 matrix "
        "multiply with the same threads)"
    )


def busy_warning(rows: list[dict[str, Any]]) -> str:
    """A sentence naming the variants timed on a busy machine; empty when none was."""
    busy = [r for r in rows if r["busy"]]
    if not busy:
        return ""
    cores = max(r["other_cores"] for r in busy)
    return (
        f"{', '.join(label(r) for r in busy)} measured while other processes kept "
        f"{cores:.1f} cores busy: rerun `cnn-compare bench` on an idle machine."
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
    result = summary(options, records)
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


def summary(options: BenchOptions, records: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """What ``bench.json`` holds: the options, each variant's summary row (the reference
    first when timed, with the ratios to it) and every process's record."""
    labels = [v.label for v in options.variants]
    reference = summarise(records[REFERENCE], options.model_spec) if REFERENCE in records else None
    paired = records.get(REFERENCE)
    rows = [
        summarise(records[label], options.model_spec, reference, paired)
        for label in sorted(labels, key=lambda label: label != REFERENCE)
    ]
    all_records = [r for label in labels for r in records[label]]
    return {
        "reference": REFERENCE if reference else None,
        "train_images": all_records[0]["train_images"],
        "threads": all_records[0]["threads"],
        "peak_gflops": _median([r["peak_gflops"] for r in all_records]),
        "processes": options.processes,
        "epochs": options.epochs,
        "phase_steps": options.phase_steps,
        "forward_mflop_per_image": flops(options.model_spec) / 1e6,
        "rows": rows,
        "records": records,
    }


# ----------------------------------------------------------------------------- the scripts


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
        "--out", type=Path, default=Path("runs/benchmarks"), help="results under OUT/<script>/"
    )
    return parser


def script_measure(
    args: argparse.Namespace, variants: Sequence[Variant], name: str
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Measure ``variants`` as a script's arguments say, write ``<out>/<name>.json``; return
    what ``summary`` returns and its rows by variant label."""
    options = BenchOptions(
        variants=tuple(variants),
        model_spec=ModelSpec(),
        train_spec=TrainSpec(),
        data_dir=args.data_dir,
        train_images=args.train_images,
        epochs=args.epochs,
        processes=args.processes,
        infer_images=args.infer_images,
        phase_steps=args.phase_steps,
        threads=args.threads,
        out=args.out / name,
    )
    with FolderLock(options.out):
        records = measure(options)
    result = summary(options, records)
    atomic_write_json(options.out / BENCH_FILE, result)
    rows = {label(row): row for row in result["rows"]}
    print(table(result["rows"]))
    if args.phase_steps:
        print(phase_table(result["rows"]))
    return result, rows
