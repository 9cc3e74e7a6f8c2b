"""``cnn-compare bench``: training and inference throughput, against the plain PyTorch loop.

Each framework runs in its own process (``compare.bench_task``) with the same thread count;
the reference is the ``pytorch`` framework, the plain loop a PyTorch user writes, so every
ratio says what a framework costs over the bare minimum on the same batches.

FLOP/s use ``cnn_common.spec.flops`` (forward, per image); a training step counts as three
forward passes (forward, and a backward of about twice its cost).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnn_common.errors import UserError
from cnn_common.files import atomic_write_json
from cnn_common.spec import ModelSpec, TrainSpec, flops
from compare import registry
from compare.jobs import BenchJob
from compare.launch import run_checked
from compare.layout import BENCH_FILE, BENCH_RECORD
from compare.lock import check_out_folder
from compare.render import md_table

REFERENCE = "pytorch"  # the plain PyTorch loop


@dataclass(frozen=True)
class BenchOptions:
    frameworks: tuple[str, ...]
    model_spec: ModelSpec
    train_spec: TrainSpec
    dataset: str = "mnist"
    data_dir: str | None = None
    train_images: int = 12800
    repeats: int = 3
    threads: int | None = None
    out: Path = Path("runs/bench")
    overwrite: bool = False  # replace a result already in out


def run_bench(options: BenchOptions) -> int:
    """Run the reference and every framework, print the throughput table with ratios."""
    check_out_folder(options.out)
    if (options.out / BENCH_FILE).exists() and not options.overwrite:
        raise UserError(
            f"{options.out} already holds a bench result ({BENCH_FILE})",
            "pass --overwrite to replace it, or choose another --out",
        )
    names = [REFERENCE, *(n for n in options.frameworks if n != REFERENCE)]
    for name in names:
        registry.check_installed(name)
    records: dict[str, dict[str, Any]] = {}
    for name in names:
        job = BenchJob.create(
            model_spec=options.model_spec,
            train_spec=options.train_spec,
            out=options.out / name,
            framework=name,
            dataset=options.dataset,
            data_dir=options.data_dir,
            train_images=options.train_images,
            repeats=options.repeats,
        )
        run_checked(job, threads=options.threads)
        records[name] = json.loads((job.path / BENCH_RECORD).read_text())
    forward = flops(options.model_spec)
    ref = records[REFERENCE]
    rows = []
    for name, rec in records.items():
        train_ips = rec["train_images"] / rec["epoch_s"]
        infer_ips = rec["infer_images"] / rec["infer_s"]
        rows.append(
            {
                "framework": name,
                "train_images_per_s": train_ips,
                "train_time_ratio": rec["epoch_s"] / ref["epoch_s"],
                "train_gflops": 3 * forward * train_ips / 1e9,
                "infer_images_per_s": infer_ips,
                "infer_time_ratio": rec["infer_s"] / ref["infer_s"],
                "infer_gflops": forward * infer_ips / 1e9,
            }
        )
    head = [
        "framework",
        "train img/s",
        "train time / pytorch",
        "train GFLOP/s",
        "infer img/s",
        "infer time / pytorch",
        "infer GFLOP/s",
    ]
    table = [
        [
            r["framework"],
            f"{r['train_images_per_s']:,.0f}",
            f"{r['train_time_ratio']:.2f}x",
            f"{r['train_gflops']:.2f}",
            f"{r['infer_images_per_s']:,.0f}",
            f"{r['infer_time_ratio']:.2f}x",
            f"{r['infer_gflops']:.2f}",
        ]
        for r in rows
    ]
    print(
        f"bench: {options.train_images} training images per epoch, median of "
        f"{options.repeats} after warm-up; forward {forward / 1e6:.2f} MFLOP/image"
    )
    print(md_table(head, table))
    atomic_write_json(options.out / BENCH_FILE, {"rows": rows, "records": records})
    print(f"wrote {options.out / BENCH_FILE}")
    return 0
