"""The machine a run measured on: its practical matrix-multiply speed, cores and load.

Timings mean something only beside the machine they came from: how fast its cores multiply
matrices with the threads a run used, and how busy it was meanwhile (another process on the
same cores makes every framework slower, some far more than others).
"""

from __future__ import annotations

import os
import time

import numpy as np


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def thread_setting() -> int:
    """The thread count a run was given (``OMP_NUM_THREADS``, as compare sets it for every
    worker), else every usable core."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else usable_cores()


def matmul_gflops(size: int = 1024, seconds: float = 0.5) -> float:
    """This machine's practical float32 matrix-multiply speed in GFLOP/s: NumPy's BLAS on
    ``size x size`` matrices (2 size^3 FLOP each), repeated for about ``seconds``, with the
    threads the BLAS was given at start-up."""
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, b, out=out)  # warm-up: threads started, pages touched
    count, start = 0, time.perf_counter()
    while True:
        np.matmul(a, b, out=out)
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return 2 * size**3 * count / elapsed / 1e9
