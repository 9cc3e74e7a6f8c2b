"""Where jobs run: one after another in worker processes here (``local``, the default), or as
tasks on a Ray cluster (``ray``), each with the CPUs it needs.

A Ray task runs the same worker process the local executor runs (``compare.engine.launch``), so a
job writes the same files and gives the same record either way, and the results land in the
same folder layout (which must be on storage every node sees when the cluster has several).
A task whose worker is lost (a node gone, a process killed) is retried, and the retry
resumes from the run's checkpoints. Ray is an extra: ``pip install -e ".[ray]"``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from cnn_common.errors import FrameworkMissingError, UserError
from cnn_common.events import Event
from cnn_common.machine import thread_setting
from compare.engine.features import job_from_json
from compare.engine.jobs import Job
from compare.engine.launch import EventTail, launch, run_in_process
from compare.engine.layout import EVENTS_FILE
from compare.engine.pool import WorkerPool

EXECUTORS = ("local", "ray")
# Variables a Ray worker needs from this process to run a job as this process would.
FORWARDED = ("CNN_DATA_DIR", "CNN_CACHE_DIR", "CNN_COMMAND", "KERAS_HOME", "PYTHONPATH")
RAY_RETRIES = 3

# the display's label of a job, the job, and its CPU threads (None: the executor's)
Labelled = tuple[str, Job, int | None]
OnEvent = Callable[[str, Event], None]
OnDone = Callable[[str, int], None]


class LocalExecutor:
    """Each job in a worker process of its own, in a warm worker of its framework when
    ``pool`` is given (``compare.engine.pool``), or in this process; one after another."""

    def __init__(
        self, threads: int | None = None, in_process: bool = False, pool: WorkerPool | None = None
    ) -> None:
        self.threads = threads
        self.in_process = in_process
        self.pool = pool

    def run(self, jobs: Sequence[Labelled], on_event: OnEvent, on_done: OnDone) -> None:
        for label, job, threads in jobs:

            def forward(event: Event, label: str = label) -> None:
                on_event(label, event)

            if self.in_process:
                status = run_in_process(job, forward)
            elif self.pool is not None and (threads or self.threads) == self.pool.threads:
                status = self.pool.run(job, forward)
            else:
                status = launch(job, threads or self.threads, forward)
            on_done(label, status)


class WorkerLostError(RuntimeError):
    """A job's worker process died of a signal: Ray runs the task again."""


def _ray_task(job_json: str, threads: int | None) -> int:
    """Inside a Ray worker: run the job in its own worker process, as the local executor
    does; a worker killed by a signal raises so that Ray retries the task."""
    status = launch(job_from_json(job_json), threads)
    if status < 0:
        raise WorkerLostError(f"the worker was killed by signal {-status}")
    return status


class RayExecutor:
    """Every job a Ray task at once, with ``threads`` CPUs each; the cluster schedules them.

    ``address`` is an existing cluster's (``ray://host:10001`` or ``auto``); None starts a
    local Ray instance on this machine's cores, which goes when the run ends.
    """

    def __init__(self, threads: int | None = None, address: str | None = None) -> None:
        # Ray sets OMP_NUM_THREADS=1 in its workers; a job's thread count is always explicit
        # here (by default what the local executor gives: OMP_NUM_THREADS, else every core).
        threads = threads or thread_setting()
        try:
            import ray
        except ImportError:
            raise FrameworkMissingError(
                "--executor ray needs Ray, which is not installed",
                'pip install -e ".[ray]"  (or leave out --executor ray)',
            ) from None
        self.ray = ray
        self.threads = threads
        self.address = address

    def run(self, jobs: Sequence[Labelled], on_event: OnEvent, on_done: OnDone) -> None:
        ray = self.ray
        started_here = not ray.is_initialized()
        if started_here:
            forwarded = {k: os.environ[k] for k in FORWARDED if k in os.environ}
            try:
                ray.init(
                    address=self.address,
                    include_dashboard=False,
                    log_to_driver=False,
                    runtime_env={"env_vars": forwarded},
                )
            except ConnectionError as exc:
                raise UserError(
                    f"cannot reach the Ray cluster at {self.address}: {exc}",
                    "check --ray-address (ray status shows it), or leave it out for a local one",
                ) from None
        task = ray.remote(max_retries=RAY_RETRIES, retry_exceptions=[WorkerLostError])(_ray_task)
        try:
            pending = {}
            for label, job, threads in jobs:
                cpus = threads or self.threads or 1
                ref = task.options(num_cpus=cpus).remote(job.to_json(), threads or self.threads)
                pending[ref] = (label, job)
            tails = [(label, EventTail(job.path / EVENTS_FILE)) for label, job, _ in jobs]
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=0.2)
                for label, tail in tails:
                    for event in tail.read():
                        on_event(label, event)
                for ref in done:
                    label, _ = pending.pop(ref)
                    try:
                        status = ray.get(ref)
                    except ray.exceptions.RayError:
                        status = 1  # retries exhausted: the job's folder says what happened
                    on_done(label, status)
        finally:
            if started_here:
                ray.shutdown()


def make_executor(
    name: str, threads: int | None, in_process: bool, address: str | None
) -> LocalExecutor | RayExecutor:
    """The executor ``--executor`` names."""
    if name == "local":
        if address:
            raise UserError("--ray-address needs --executor ray", "add --executor ray")
        return LocalExecutor(threads, in_process)
    if name == "ray":
        if in_process:
            raise UserError(
                "--in-process and --executor ray exclude each other",
                "leave out one of them",
            )
        return RayExecutor(threads, address)
    raise UserError(f"unknown executor {name!r}", f"use one of: {', '.join(EXECUTORS)}")
