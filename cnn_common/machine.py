"""The machine a run measured on: its practical matrix-multiply speed, cores and load.

Timings mean something only beside the machine they came from: how fast its cores multiply
matrices with the threads a run used, and how busy it was meanwhile (another process on the
same cores makes every framework slower, some far more than others).
"""

from __future__ import annotations

import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

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


def is_main_process() -> bool:
    """False in the processes a distributed launcher (Lightning's DDP, torchrun) starts beside
    the first: only the first writes the run's files and sends its events."""
    return all(
        int(os.environ.get(name, "0") or 0) == 0 for name in ("RANK", "LOCAL_RANK", "NODE_RANK")
    )


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


def _machine_busy_seconds() -> float | None:
    """CPU seconds every process on the machine has run (all cores), from ``/proc/stat``."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    ticks = [int(v) for v in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# Another process using more than this share of the cores during a run makes its timing
# untrustworthy: threads of PyTorch and oneDNN that spin while they wait collapse under it.
BUSY_SHARE = 0.25

# OpenMP (libgomp: PyTorch, oneDNN, MKL) threads spin about 300,000 times waiting for the next
# parallel region before they sleep. On an idle machine that is fastest; beside another process
# that computes on every core, a spinning thread takes the core from the thread it waits for,
# and a PyTorch epoch runs many times slower. Spinning 1,000 times lets them sleep within
# microseconds but costs some speed on an idle machine, so it is chosen only when the machine
# is busy as a torch process starts (docs/design.md has the measured figures;
# benchmarks/bench_under_load.py measures them again).
BUSY_SPINCOUNT = "1000"
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def other_cores_busy(seconds: float = 0.1) -> float | None:
    """The cores other processes keep busy, on average over the next ``seconds``: the
    machine's CPU time (``/proc/stat``) less this process's, over the wall time. None where
    ``/proc/stat`` cannot be read."""
    machine, own, wall = _machine_busy_seconds(), _own_cpu_seconds(), time.perf_counter()
    time.sleep(seconds)
    after = _machine_busy_seconds()
    if machine is None or after is None:
        return None
    spent = time.perf_counter() - wall
    return max(0.0, (after - machine - (_own_cpu_seconds() - own)) / spent)


# Set by a parent that decided the policy for the workers it starts side by side.
DECIDED_VARIABLE = "CNN_OPENMP_POLICY_DECIDED"


def _machine_is_busy() -> bool:
    busy = other_cores_busy()
    return busy is not None and busy > BUSY_SHARE * usable_cores()


def decide_openmp_wait_policy() -> dict[str, str]:
    """For a parent about to start several workers at once: the environment that gives them
    the wait policy each would choose alone (``set_openmp_wait_policy``), decided now, before
    any of them starts. Side by side, each would take the others' imports for a busy
    machine."""
    if any(var in os.environ for var in WAIT_VARIABLES):
        return {}
    chosen = {"GOMP_SPINCOUNT": BUSY_SPINCOUNT} if _machine_is_busy() else {}
    return {**chosen, DECIDED_VARIABLE: "1"}


def set_openmp_wait_policy() -> str:
    """Before PyTorch is imported: on a busy machine (other processes keep more than
    ``BUSY_SHARE`` of the cores busy), ``GOMP_SPINCOUNT=BUSY_SPINCOUNT`` in this process's
    environment, so that OpenMP threads stop spinning soon (see ``BUSY_SPINCOUNT``). Settings
    already in the environment win, and nothing changes once torch is loaded (libgomp reads
    them when it starts). The thread count, and so every number a run computes, stays the
    same. Returns the spin count now in force ("" for libgomp's default)."""
    decided = ("torch" in sys.modules, DECIDED_VARIABLE in os.environ)
    if any(decided) or any(var in os.environ for var in WAIT_VARIABLES):
        return os.environ.get("GOMP_SPINCOUNT", "")
    if _machine_is_busy():
        os.environ["GOMP_SPINCOUNT"] = BUSY_SPINCOUNT
    return os.environ.get("GOMP_SPINCOUNT", "")


class LoadMeter:
    """How busy the machine was while a run trained: this process's CPU time against its wall
    time, and the CPU time every other process took meanwhile (from ``/proc/stat``)."""

    def __init__(self) -> None:
        self.start()

    def start(self) -> None:
        self._wall = time.perf_counter()
        self._own = _own_cpu_seconds()
        self._machine = _machine_busy_seconds()

    def read(self, threads: int) -> dict[str, float | int | bool]:
        """``wall_s``, ``cpu_s`` (this process), ``other_cores`` (the cores other processes
        kept busy on average), ``load_avg`` (1 minute), ``threads`` and ``busy``."""
        wall = max(time.perf_counter() - self._wall, 1e-9)
        own = _own_cpu_seconds() - self._own
        machine = _machine_busy_seconds()
        other = None
        if machine is not None and self._machine is not None:
            other = max(0.0, (machine - self._machine - own) / wall)
        cores = usable_cores()
        reading: dict[str, float | int | bool] = {
            "wall_s": wall,
            "cpu_s": own,
            "threads": threads,
            "cores": cores,
            "load_avg": os.getloadavg()[0] if hasattr(os, "getloadavg") else -1.0,
        }
        if other is not None:
            reading["other_cores"] = other
            reading["busy"] = other > BUSY_SHARE * cores
        return reading


def environment() -> dict[str, str | int]:
    """Where a run ran: CPU model, cores, OS, Python, NumPy's BLAS, the project's git commit
    and the command that reproduces it (``CNN_COMMAND`` when compare started the process)."""
    blas = ""
    try:
        deps = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{deps.get('name', '')} {deps.get('version', '')}".strip()
    except (KeyError, TypeError, ValueError):
        pass
    return {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy_blas": blas,
        "git_commit": git_commit(),
        "command": os.environ.get("CNN_COMMAND") or shlex.join(sys.argv),
        "openmp_wait": " ".join(f"{v}={os.environ[v]}" for v in WAIT_VARIABLES if v in os.environ)
        or "default",
    }


def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else what ``platform`` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    """The project's git commit (``+dirty`` when files differ from it), or "" outside git."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return ""
    return commit + ("+dirty" if dirty else "")
