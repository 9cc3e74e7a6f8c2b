"""A worker's bench task: time one framework's training epochs and its inference.

Training: the framework's own ``train`` (its real training path: the shared batch order,
per-step records) over ``train_images`` images for ``repeats + 1`` epochs; the first epoch is
warm-up and the median of the rest is kept. Inference: ``predict_logits`` on 10,000 test
images, the median of ``repeats`` after a warm-up.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cnn_common.data import subset, training_data
from cnn_common.files import atomic_write_json
from cnn_common.weights import init_weights
from compare import registry
from compare.jobs import BenchJob
from compare.layout import BENCH_RECORD

N_INFER = 10000


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """The median wall time of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()  # warm-up: graph tracing, allocations, caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def run_bench_task(job: BenchJob) -> None:
    """Write ``bench.json``: the epoch times, their median after warm-up, inference time."""
    model_spec, train_spec = job.specs()
    train_spec = dataclasses.replace(train_spec, epochs=job.repeats + 1)
    framework = registry.load(job.framework)
    data = training_data(job.dataset, train_spec, root=job.data_dir)
    n = job.train_images
    x_test = data.x_test[:N_INFER]
    start = init_weights(model_spec, train_spec.seed, train_spec.dtype)
    small = subset(data, n, n_val=500, n_test=1000)  # evaluation is not what is timed here
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
    model = framework.build(model_spec, train_spec.dtype)
    framework.set_weights(model, start)
    infer_s = median_time(lambda: framework.predict_logits(model, x_test), job.repeats)
    atomic_write_json(
        job.path / BENCH_RECORD,
        {
            "framework": job.framework,
            "train_images": n,
            "epoch_times": result.epoch_times,
            "epoch_s": float(np.median(result.epoch_times[1:])),
            "infer_s": infer_s,
            "infer_images": len(x_test),
        },
    )
