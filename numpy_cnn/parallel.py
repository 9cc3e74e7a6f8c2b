"""Data parallelism over CPU cores for the training step: one batch shard per thread.

NumPy runs elementwise operations on one core, and a small convolution GEMM does not keep two
BLAS threads busy. Splitting the batch into one shard per core, each running the whole
forward and backward pass in its own thread with a single-threaded BLAS, keeps every core
busy: ufuncs and BLAS release the GIL. The batch gradient is the sum of the shard gradients,
added in shard order, so the result does not depend on which thread finishes first.

Single-threaded BLAS per thread needs OpenBLAS's ``openblas_set_num_threads_local`` (OpenBLAS
0.3.27+, as in NumPy's wheels). Where it is missing (another BLAS, another OS), ``workers()``
is 1 and training runs the plain sequential step.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from cnn_common.machine import thread_setting

T = TypeVar("T")


@functools.cache
def _set_local_blas_threads() -> ctypes._CFuncPtr | None:
    """OpenBLAS's per-thread thread-count setter from the library NumPy loaded, or None."""
    maps = Path("/proc/self/maps")
    if not maps.exists():
        return None
    import numpy  # noqa: F401 - make sure NumPy's BLAS is loaded before looking for it

    paths = {line.split()[-1] for line in maps.read_text().splitlines() if "openblas" in line}
    for path in sorted(paths):
        try:
            library = ctypes.CDLL(path)
            setter = library.openblas_set_num_threads_local
        except (OSError, AttributeError):
            continue
        setter.argtypes, setter.restype = [ctypes.c_int], ctypes.c_int
        return setter
    return None


@functools.cache
def workers() -> int:
    """Number of shards a training batch is split into: the threads the run was given
    (``OMP_NUM_THREADS``, as compare sets it for every framework; else the usable cores), at
    most 8, or 1 when the BLAS cannot be made single-threaded per thread."""
    if _set_local_blas_threads() is None:
        return 1
    return max(1, min(thread_setting(), 8))


def _single_threaded_blas() -> None:
    setter = _set_local_blas_threads()
    if setter is not None:
        setter(1)


@functools.cache
def executor() -> ThreadPoolExecutor:
    """The shared pool of ``workers()`` threads, each with a single-threaded BLAS."""
    return ThreadPoolExecutor(
        max_workers=workers(), thread_name_prefix="numpy_cnn", initializer=_single_threaded_blas
    )


def in_pool(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a thread of the pool, with the single-threaded BLAS that training and
    inference use: a BLAS product split over two threads adds its partial sums in another
    order, so only this gives the model's numbers to the last bit."""
    if workers() == 1:
        return fn(*args)
    return executor().submit(fn, *args).result()
