"""Running a job: in a worker process of its own (the default) or in this process.

A worker gets the framework's environment (``FrameworkInfo.env``: a Keras backend) and thread
counts set before it starts, dies with its parent (``PR_SET_PDEATHSIG`` on Linux, so a killed
run leaves no orphan), writes its output to ``log.txt`` and its events to ``events.jsonl``,
which ``launch`` reads as they come.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cnn_common.errors import UserError
from cnn_common.events import Event, EventCallback
from cnn_common.files import atomic_write_bytes
from cnn_common.machine import usable_cores
from compare.engine import registry
from compare.engine.jobs import Job
from compare.engine.layout import EVENTS_FILE, FAILED_FILE, JOB_FILE, LOG_FILE
from compare.engine.worker import run_recorded, write_failure

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
)


def child_env(framework: str, threads: int | None) -> dict[str, str]:
    """Environment of a worker: the framework's own variables and thread counts, set before
    any framework starts. ``threads`` given sets every thread count; None keeps the ones this
    process has and gives the others every usable core."""
    env = dict(os.environ)
    n = str(threads or usable_cores())
    for var in THREAD_VARIABLES:
        if threads is not None:
            env[var] = n
        else:
            env.setdefault(var, n)
    env.setdefault("TF_NUM_INTEROP_THREADS", "1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(registry.get(framework).env)
    return env


class EventTail:
    """The events a job appends to its ``events.jsonl``, read as they come (from the end the
    file had when the tail was made: a resumed job's earlier events are not read again)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0
        self.pending = b""

    def read(self) -> list[Event]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        self.offset += len(chunk)
        *lines, self.pending = (self.pending + chunk).split(b"\n")
        return [Event.from_json(line.decode()) for line in lines if line.strip()]


def die_with_parent() -> None:
    """In the child: receive SIGTERM when the parent dies, so a killed run leaves no orphan."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def launch(
    job: Job,
    threads: int | None = None,
    on_event: EventCallback | None = None,
    poll_s: float = 0.2,
) -> int:
    """Run ``job`` in a worker process; feed its events to ``on_event``; return its status."""
    out = job.path
    out.mkdir(parents=True, exist_ok=True)
    job_path = out / JOB_FILE
    atomic_write_bytes(job_path, job.to_json().encode())
    tail = EventTail(out / EVENTS_FILE)
    with open(out / LOG_FILE, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "compare.engine.worker", str(job_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env(job.framework, threads),
            preexec_fn=die_with_parent,
        )
        try:
            while True:
                status = proc.poll()
                if on_event is not None:
                    for event in tail.read():
                        on_event(event)
                if status == -signal.SIGINT:  # Ctrl-C reached the worker first
                    raise KeyboardInterrupt
                if status is not None:
                    return status
                time.sleep(poll_s)
        finally:
            if proc.poll() is None:  # interrupted: take the worker down with us
                stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """Stop a worker as Ctrl-C would (its unfinished writes remove their temporary files),
    then for good if it has not ended within 10 s."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_in_process(job: Job, on_event: EventCallback | None = None) -> int:
    """Run ``job`` in this process (``--in-process``); the same status and files as a worker."""
    job.path.mkdir(parents=True, exist_ok=True)
    registry.check_environment(job.framework)
    return run_recorded(job, on_event)


def read_failure(path: Path, status: int) -> dict[str, str]:
    """What ``failed.json`` says about a failed job; a worker that died without writing it
    (killed, out of memory) gets one written from its status and the end of its log."""
    try:
        return json.loads((path / FAILED_FILE).read_text())
    except (OSError, ValueError):
        log_path = path / LOG_FILE
        tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
        failure = {
            "kind": "crash",
            "error": f"worker exited with status {status}",
            "traceback": tail,
        }
        write_failure(path, failure["kind"], failure["error"], failure["traceback"])
        return failure


def run_checked(job: Job, in_process: bool = False, threads: int | None = None) -> None:
    """Run a job that must succeed (parity, bench); a failure raises ``UserError`` naming the
    framework, why it failed and where its log is."""
    status = run_in_process(job) if in_process else launch(job, threads)
    if status != 0:
        failure = read_failure(job.path, status)
        raise UserError(
            f"the {job.kind} job of {job.framework} failed: {failure['error']}",
            f"see {job.path / LOG_FILE}",
        )
