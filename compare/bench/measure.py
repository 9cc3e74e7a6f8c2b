"""Timings a user can trust: every framework in fresh worker processes taking turns, the
figures medians over them.

Every measurement runs in a fresh worker process (``compare.bench.task``) with the same thread
count, the frameworks taking turns (A, B, A, B, ...) so that a drift of the machine touches
them alike; each figure is the median over the processes. The reference is the framework whose
declaration says ``bench_reference`` (the plain PyTorch loop, the loop a PyTorch user writes),
so a ratio says what a framework costs over the bare minimum on the same batches.

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

from cnn_common.phases import PHASES
from cnn_common.spec import ModelSpec, flops
from compare.bench.job import BenchJob
from compare.engine import registry
from compare.engine.launch import run_checked
from compare.engine.layout import BENCH_JOBS_DIR, BENCH_RECORD
from compare.engine.options import Options, at_least

# The framework the others are timed against, from the declarations (``bench_reference``).
REFERENCE = registry.bench_reference()


@dataclass(frozen=True)
class Variant:
    """A framework as timed: its name and the defaults handed back to it (``native``)."""

    framework: str
    native: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return variant_label({"framework": self.framework, "native": self.native})

    @property
    def folder(self) -> str:
        return self.framework + "".join(f"-native-{choice}" for choice in self.native)


@dataclass(frozen=True, kw_only=True)
class BenchOptions(Options):
    """Everything ``cnn-compare bench`` (or a script in ``benchmarks/``) was asked to time."""

    variants: tuple[Variant, ...]
    train_images: int = 12800
    epochs: int = 1  # timed epochs per process, after a warm-up epoch
    processes: int = 3  # fresh processes per variant; figures are medians over them
    infer_images: int = 10000
    phase_steps: int = 30
    out: Path = Path("runs/bench")

    def __post_init__(self) -> None:
        if not self.frameworks:  # the frameworks the variants time, in order
            names = tuple(dict.fromkeys(v.framework for v in self.variants))
            object.__setattr__(self, "frameworks", names)


def timing_fields(args: argparse.Namespace, epochs: int, epochs_flag: str) -> dict[str, Any]:
    """The ``BenchOptions`` fields of what to time, from the options ``cnn-compare bench`` and
    the ``benchmarks/`` scripts share (``epochs``: their timed epochs, ``epochs_flag`` its
    name), each checked (``UserError`` naming the flag)."""
    for flag, value, low in (
        ("--train-images", args.train_images, 1),
        (epochs_flag, epochs, 1),
        ("--processes", args.processes, 1),
        ("--infer-images", args.infer_images, 0),
        ("--phase-steps", args.phase_steps, 0),
        ("--threads", args.threads, 1),
    ):
        at_least(flag, value, low)
    return {
        "train_images": args.train_images,
        "epochs": epochs,
        "processes": args.processes,
        "infer_images": args.infer_images,
        "phase_steps": args.phase_steps,
        "threads": args.threads,
    }


def variant_label(row: dict[str, Any]) -> str:
    """How a row (or a record) names its variant: the framework, and the defaults handed
    back to it, e.g. ``pytorch (native order)``."""
    native = row["native"]
    return row["framework"] + (f" (native {'+'.join(native)})" if native else "")


def measure(
    options: BenchOptions, log: Callable[[str], None] = print
) -> dict[str, list[dict[str, Any]]]:
    """Every variant in ``options.processes`` fresh processes, taking turns; the records of
    ``compare.bench.task`` by variant label, in process order."""
    for variant in options.variants:
        registry.check_installed(variant.framework)
    records: dict[str, list[dict[str, Any]]] = {v.label: [] for v in options.variants}
    for turn in range(options.processes):
        for variant in options.variants:
            log(f"bench: {variant.label}, process {turn + 1} of {options.processes}")
            job = options.job(
                BenchJob,
                variant.framework,
                options.out / BENCH_JOBS_DIR / f"{variant.folder}-{turn + 1}",
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


def variant_row(
    records: list[dict[str, Any]],
    model_spec: ModelSpec,
    reference: dict[str, Any] | None = None,
    reference_records: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One variant's processes in figures: medians over all timed epochs and processes, the
    share of the machine's peak, the largest peak memory, the median of each phase; ratios
    to ``reference`` (another variant's row) when given, and with ``reference_records``
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


def same_step_losses(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """Whether two variants' first processes trained to bit-identical per-step losses."""
    return a[0]["step_losses"] == b[0]["step_losses"]


def bench_result(options: BenchOptions, records: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """What ``bench.json`` holds: the options, each variant's row (``variant_row``; the
    reference first when timed, with the ratios to it) and every process's record."""
    labels = [v.label for v in options.variants]
    reference = (
        variant_row(records[REFERENCE], options.model_spec) if REFERENCE in records else None
    )
    paired = records.get(REFERENCE)
    rows = [
        variant_row(records[label], options.model_spec, reference, paired)
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
