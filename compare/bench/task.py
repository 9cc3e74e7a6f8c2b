"""A worker's bench task: one framework timed in this fresh process (``compare.bench``).

In order, all with the threads the parent gave the process:

1. the machine's practical peak: float32 matrix multiplies (``cnn_common.machine``);
2. training: the framework's own ``train`` (its real path: the shared batch order, per-step
   records) on ``train_images`` images for ``1 + epochs`` epochs; the first is warm-up (graph
   tracing, allocations, thread pools) and only the others are kept; then the process's peak
   resident memory so far;
3. inference: ``predict_logits`` on ``infer_images`` test images, the median of 3 after a
   warm-up call;
4. ``phase_times`` (when the package has it): ``phase_steps`` steps timed by phase.
"""

from __future__ import annotations

import dataclasses
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cnn_common.data import subset, training_data
from cnn_common.events import EventCallback
from cnn_common.files import atomic_write_json
from cnn_common.machine import LoadMeter, matmul_gflops, thread_setting
from cnn_common.weights import init_weights
from compare.bench.job import BenchJob
from compare.engine import registry
from compare.engine.layout import BENCH_RECORD


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """The median wall time of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()  # warm-up: graph tracing, allocations, caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB (``ru_maxrss``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes | KiB


def run_bench_task(job: BenchJob, on_event: EventCallback | None = None) -> None:
    """Write ``bench.json`` in the job's folder: what the module docstring lists."""
    load = LoadMeter()
    model_spec, train_spec = job.specs()
    framework = registry.load(job.framework)
    data = training_data(job.dataset, train_spec, root=job.data_dir)
    start = init_weights(model_spec, train_spec.seed, train_spec.dtype)
    peak = matmul_gflops()
    # Evaluation is not what is timed: small validation and test sets.
    small = subset(data, job.train_images, n_val=500, n_test=1000)
    timed = dataclasses.replace(train_spec, epochs=1 + job.epochs)
    with tempfile.TemporaryDirectory() as tmp:
        result = framework.train(
            model_spec,
            timed,
            small,
            Path(tmp),
            init_weights=start,
            progress=False,
            device="cpu",
            native=job.native,
        )
    train_rss = peak_rss_mib()
    steps = len(result.step_losses) // timed.epochs
    record: dict = {
        "framework": job.framework,
        "native": list(job.native),
        "threads": result.threads or thread_setting(),
        "device": result.device,
        "train_images": len(small.x_train),
        "steps_per_epoch": steps,
        "epoch_times": result.epoch_times[1:],
        "step_losses": result.step_losses[steps:],  # the timed epochs'
        "peak_gflops": peak,
        "train_peak_rss_mib": train_rss,
        "infer_images": 0,
        "infer_s": None,
        "phases": {},
        "phases_note": "",
    }
    if job.infer_images:
        x_test = data.x_test[: job.infer_images]
        model = framework.build(model_spec, train_spec.dtype)
        framework.set_weights(model, start)
        record["infer_s"] = median_time(lambda: framework.predict_logits(model, x_test), 3)
        record["infer_images"] = len(x_test)
    if job.phase_steps:
        if hasattr(framework, "phase_times"):
            phases = framework.phase_times(model_spec, train_spec, small, start, job.phase_steps)
            record["phases"] = phases.medians()
            record["phases_note"] = phases.note
        else:
            record["phases_note"] = f"{framework.__name__} has no phase_times"
    record["load"] = load.read(record["threads"])
    atomic_write_json(job.path / BENCH_RECORD, record)
