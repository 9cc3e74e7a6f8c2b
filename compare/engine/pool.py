"""Warm workers: one long-lived worker process per framework, for a command that sends one
framework several jobs (``run``: every seed's training, then the cross-evaluation).

Most of a fresh worker's start-up is its framework's imports, seconds for TensorFlow or
PyTorch, paid again by every job. A ``WorkerPool`` starts the workers of every framework side
by side before any job runs (nothing is timed yet), each imports its framework and says it is
ready; then each job goes to its framework's worker, one job at a time, as ``launch`` would
run it: the same ``job.json``, ``events.jsonl``, ``log.txt`` (the worker's output while it
runs the job) and ``failed.json``, and the same statuses. While one framework trains, the
other workers wait on a pipe and take no CPU time.

Messages: the parent writes a job file's path a line to the worker's standard input; the
worker answers on a pipe of its own (``ready``, then one status per job), so nothing the
frameworks print can be taken for an answer. A worker that dies (killed, out of memory) fails
its job as a dead ``launch`` worker does, and the next job of that framework starts a fresh
one. The workers start with the OpenMP wait policy decided once, by this process, before any
of them runs (``cnn_common.machine.decide_openmp_wait_policy``): side by side, each would see
the others' imports as a busy machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

from cnn_common.events import EventCallback
from cnn_common.files import atomic_write_bytes
from cnn_common.machine import decide_openmp_wait_policy
from compare.engine.jobs import Job
from compare.engine.launch import EventTail, child_env, die_with_parent, stop
from compare.engine.layout import EVENTS_FILE, JOB_FILE, worker_log
from compare.engine.worker import READY, write_failure

PYTHON, WORKER = sys.executable, "compare.engine.worker"


class WarmWorker:
    """One worker process of ``framework``, started with ``threads`` threads, its output
    before and between jobs in ``log``."""

    def __init__(self, framework: str, threads: int | None, log: Path, env: dict[str, str]):
        self.framework = framework
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        read_end, write_end = os.pipe()
        with open(log, "ab") as output:
            self.proc = subprocess.Popen(
                [PYTHON, "-m", WORKER, "--serve", str(write_end), framework, str(log)],
                stdin=subprocess.PIPE,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**child_env(framework, threads), **env},
                pass_fds=(write_end,),
                preexec_fn=die_with_parent,
            )
        os.close(write_end)
        self._replies = read_end
        self._pending = b""
        self.ready = False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _reply(self, timeout: float) -> str | None:
        """The worker's next answer, or None when none came within ``timeout`` seconds (or
        the worker has ended: check ``alive``)."""
        while b"\n" not in self._pending:
            readable, _, _ = select.select([self._replies], [], [], timeout)
            if not readable:
                return None
            chunk = os.read(self._replies, 4096)
            if not chunk:  # the worker closed its end: it is ending
                self.proc.wait()
                return None
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return line.decode()

    def wait_ready(self) -> bool:
        """Wait until the worker has imported its framework; False when it died first."""
        while not self.ready and self.alive():
            self.ready = self._reply(0.2) == READY
        return self.ready

    def run(self, job: Job, on_event: EventCallback | None, poll_s: float = 0.2) -> int:
        """Run ``job`` in this worker; feed its events to ``on_event``; return its status
        (negative: the worker died of that signal, as ``launch`` returns it)."""
        job.path.mkdir(parents=True, exist_ok=True)
        job_path = job.path / JOB_FILE
        atomic_write_bytes(job_path, job.to_json().encode())
        tail = EventTail(job.path / EVENTS_FILE)
        if not self.wait_ready():
            return self._died_before(job)
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(f"{job_path}\n".encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            return self._died_before(job)
        while True:
            answer = self._reply(poll_s)
            if on_event is not None:
                for event in tail.read():
                    on_event(event)
            if answer is not None:
                return int(json.loads(answer)["status"])
            if not self.alive():
                status = self.proc.wait()
                if status == -signal.SIGINT:  # Ctrl-C reached the worker first
                    raise KeyboardInterrupt
                return status

    def _died_before(self, job: Job) -> int:
        """The worker ended before it took ``job``: the job fails with the worker's log."""
        status = self.proc.wait()
        tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        write_failure(
            job.path, "crash", f"the {self.framework} worker exited with status {status}", tail
        )
        return status or 1

    def release(self) -> None:
        """Tell the worker to end once its job is done (its standard input closes)."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()

    def close(self, timeout: float = 10) -> None:
        """Let the worker end, then stop it if it has not within ``timeout`` seconds."""
        self.release()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop(self.proc)
        os.close(self._replies)


class WorkerPool:
    """Warm workers by framework for the jobs of one command; a context manager that stops
    every worker on the way out (as Ctrl-C would stop a ``launch`` worker)."""

    def __init__(self, out: Path, threads: int | None = None) -> None:
        self.out = out
        self.threads = threads
        self.workers: dict[str, WarmWorker] = {}
        self.env = decide_openmp_wait_policy()

    def start(self, frameworks: list[str]) -> None:
        """Start a worker for each of ``frameworks`` at once and wait until all are ready
        (or dead: their first job then says why)."""
        for name in frameworks:
            self._worker(name)
        for name in frameworks:
            self.workers[name].wait_ready()

    def _worker(self, framework: str) -> WarmWorker:
        worker = self.workers.get(framework)
        if worker is None or not worker.alive():
            if worker is not None:
                worker.close(timeout=0)
            worker = WarmWorker(framework, self.threads, worker_log(self.out, framework), self.env)
            self.workers[framework] = worker
        return worker

    def run(self, job: Job, on_event: EventCallback | None = None) -> int:
        """Run ``job`` in its framework's warm worker (a fresh one if it has none alive)."""
        return self._worker(job.framework).run(job, on_event)

    def close(self) -> None:
        """Let every worker end, side by side (a framework's teardown takes moments)."""
        for worker in self.workers.values():
            worker.release()
        for worker in self.workers.values():
            worker.close()
        self.workers.clear()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:  # only whether the block failed matters, not how
            self.close()
            return
        for worker in self.workers.values():  # interrupted or failed: no waiting
            worker.close(timeout=0)
        self.workers.clear()
