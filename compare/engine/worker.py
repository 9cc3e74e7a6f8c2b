"""The worker process: ``python -m compare.engine.worker JOB.json`` runs one job (a
``compare.engine.jobs.Job`` of any kind a feature registers).

It appends the job's progress events to ``<out>/events.jsonl`` (one JSON object a line) and
writes its outputs under ``<out>``. A user error is written to ``<out>/failed.json`` and exits
with status 2; a crash writes its traceback there and exits 1. The parent
(``compare.engine.launch``) reads only these files: nothing a child prints is parsed, so
framework logging cannot break it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

from cnn_common.errors import EXIT_USER_ERROR, UserError
from cnn_common.events import Event, EventCallback
from cnn_common.files import atomic_write_json
from compare.engine import features, registry
from compare.engine.jobs import BatchJob, Job
from compare.engine.layout import EVENTS_FILE, FAILED_FILE, LOG_FILE

READY = "ready"  # a warm worker's first answer: its framework is imported


def run_job(job: Job, on_event: EventCallback | None) -> None:
    """Run ``job`` in this process with the handler its feature registered for its kind."""
    features.handler(job.kind)(job, on_event)


def run_batch(job: BatchJob, on_event: EventCallback | None) -> None:
    """Run a batch's jobs one after the other; a failure is recorded in its folder and the
    batch goes on with the next."""
    for one in job.jobs:
        one.path.mkdir(parents=True, exist_ok=True)
        run_recorded(one, on_event)


def write_failure(out: Path, kind: str, error: str, trace: str = "") -> None:
    """Record why a job failed (``kind``: user | crash | killed), for the parent and the report."""
    atomic_write_json(Path(out) / FAILED_FILE, {"kind": kind, "error": error, "traceback": trace})


def run_recorded(job: Job, on_event: EventCallback | None) -> int:
    """Run ``job``; on failure write ``failed.json`` and return 2 (user error) or 1 (crash)."""
    (job.path / FAILED_FILE).unlink(missing_ok=True)
    try:
        run_job(job, on_event)
    except UserError as exc:
        write_failure(job.path, "user", str(exc))
        return EXIT_USER_ERROR
    except Exception as exc:  # noqa: BLE001 - recorded for the report, then exit 1
        write_failure(job.path, "crash", f"{type(exc).__name__}: {exc}", traceback.format_exc())
        traceback.print_exc()
        return 1
    return 0


def run_file(job_path: Path) -> int:
    """Run the job written in ``job_path``, its events appended to its ``events.jsonl``."""
    job = features.job_from_json(Path(job_path).read_text())
    job.path.mkdir(parents=True, exist_ok=True)
    with open(job.path / EVENTS_FILE, "a", buffering=1) as events:

        def on_event(event: Event) -> None:
            events.write(event.to_json() + "\n")

        return run_recorded(job, on_event)


@contextlib.contextmanager
def output_to(path: Path) -> Iterator[None]:
    """This process's standard output and error (file descriptors 1 and 2, so the
    frameworks' native logging too) appended to ``path`` meanwhile."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def serve(reply_fd: int, framework: str) -> int:
    """A warm worker (``compare.engine.pool``): import ``framework``, answer ``ready`` on
    ``reply_fd``, then run each job whose file's path comes on standard input, answering its
    status, until standard input closes."""
    replies = os.fdopen(reply_fd, "w", buffering=1)
    registry.load(framework).build  # noqa: B018 - its imports, done now
    replies.write(READY + "\n")
    for line in sys.stdin:
        job_path = Path(line.strip())
        job = features.job_from_json(job_path.read_text())
        with output_to(job.path / LOG_FILE):
            status = run_file(job_path)
        replies.write(json.dumps({"status": status}) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``JOB.json``: run that job; ``--serve FD FRAMEWORK LOG``: be a warm worker (``LOG``
    names its output for whoever lists processes)."""
    args = sys.argv[1:] if argv is None else argv
    if args[0] == "--serve":
        return serve(int(args[1]), args[2])
    return run_file(Path(args[0]))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
