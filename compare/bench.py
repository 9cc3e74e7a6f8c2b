"""``cnn-compare bench``: training and inference throughput, against a plain PyTorch loop.

Each framework runs in its own process with the same thread count. Training: ``train()`` of
the framework's package (its real training path: shared batch order, per-step loss records)
over ``--train-images`` images for ``repeats + 1`` epochs; the first epoch is warm-up, the
median of the rest is reported. Inference: ``predict_logits`` on 10,000 test images, median of
``repeats`` after a warm-up. The reference is ``lightning_cnn.reference.plain_torch_train`` — a
bare PyTorch loop over the same batches — and a ``torch.no_grad`` forward pass.

FLOP/s use ``cnn_common.spec.flops`` (forward, per image); a training step counts as three
forward passes (forward, and a backward of about twice its cost).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnn_common.data import subset
from cnn_common.spec import ModelSpec, TrainSpec, flops
from cnn_common.weights import atomic_write_bytes, init_weights
from compare.frameworks import check_installed
from compare.report import md_table
from compare.runner import child_env, run_checked
from compare.worker import make_job

BENCH_FILE = "bench.json"
REFERENCE = "torch"  # the plain PyTorch loop
N_INFER = 10000


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


def _median_time(fn: Any, repeats: int) -> float:
    fn()  # warm-up: graph tracing, allocations, caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def run_bench_job(job: dict[str, Any]) -> None:
    """In a worker: time training epochs and inference of one framework (or the reference)."""
    from compare.worker import data_for_job, job_specs

    model_spec, train_spec = job_specs(job)
    repeats = int(job["repeats"])
    train_spec = dataclasses.replace(train_spec, epochs=repeats + 1)
    data = data_for_job({**job, "subset": None}, train_spec)
    n = int(job["train_images"])
    x_test = data.x_test[:N_INFER]
    start = init_weights(model_spec, train_spec.seed, train_spec.dtype)
    if job["framework"] == REFERENCE:
        epoch_times, infer_s = _bench_reference(
            model_spec, train_spec, data.x_train[:n], data.y_train[:n], start, x_test, repeats
        )
    else:
        from compare.frameworks import load

        framework = load(job["framework"])
        small = subset(data, n, n_val=500, n_test=1000)
        with tempfile.TemporaryDirectory() as tmp:
            result = framework.train(
                model_spec,
                train_spec,
                small,
                Path(tmp),
                init_weights=start,
                progress=False,
                device="cpu",
            )
        epoch_times = result.epoch_times
        model = framework.build(model_spec, train_spec.dtype)
        framework.set_weights(model, start)
        infer_s = _median_time(lambda: framework.predict_logits(model, x_test), repeats)
    record = {
        "framework": job["framework"],
        "train_images": n,
        "epoch_times": epoch_times,
        "epoch_s": float(np.median(epoch_times[1:])),
        "infer_s": infer_s,
        "infer_images": len(x_test),
    }
    atomic_write_bytes(Path(job["out"]) / BENCH_FILE, json.dumps(record, indent=1).encode())


def _bench_reference(
    model_spec: ModelSpec,
    train_spec: TrainSpec,
    x: np.ndarray,
    y: np.ndarray,
    start: dict[str, np.ndarray],
    x_test: np.ndarray,
    repeats: int,
) -> tuple[list[float], float]:
    import torch

    from lightning_cnn.model import CNN, set_weights
    from lightning_cnn.reference import plain_torch_train

    run = plain_torch_train(model_spec, train_spec, x, y, init_weights=start)
    net = CNN(model_spec)
    set_weights(net, start)
    net.eval()
    images = torch.from_numpy(np.ascontiguousarray(x_test.transpose(0, 3, 1, 2)))  # NCHW

    def infer() -> None:
        with torch.no_grad():
            for i in range(0, len(images), 1000):
                net(images[i : i + 1000])

    return list(run.epoch_times), _median_time(infer, repeats)


def run_bench(options: BenchOptions) -> int:
    """Run the reference and every framework, print the throughput table with ratios."""
    check_installed("lightning")  # the reference loop is PyTorch
    records: dict[str, dict[str, Any]] = {}
    for name in (REFERENCE, *options.frameworks):
        if name != REFERENCE:
            check_installed(name)
        out = options.out / name
        job = make_job(
            "bench",
            name,
            options.model_spec,
            options.train_spec,
            out,
            dataset=options.dataset,
            data_dir=options.data_dir,
            train_images=options.train_images,
            repeats=options.repeats,
        )
        run_checked(job, out, child_env(options.threads), in_process=False)
        records[name] = json.loads((out / BENCH_FILE).read_text())
    forward = flops(options.model_spec)
    ref = records[REFERENCE]
    rows = []
    for name, rec in records.items():
        train_ips = rec["train_images"] / rec["epoch_s"]
        infer_ips = rec["infer_images"] / rec["infer_s"]
        rows.append(
            {
                "framework": "plain PyTorch loop" if name == REFERENCE else name,
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
        "train time / torch",
        "train GFLOP/s",
        "infer img/s",
        "infer time / torch",
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
    atomic_write_bytes(
        options.out / "bench.json",
        json.dumps({"rows": rows, "records": records}, indent=1).encode(),
    )
    return 0
