"""The worker process: ``python -m compare.worker JOB.json`` runs one job of ``compare.jobs``.

It appends the job's progress events to ``<out>/events.jsonl`` (one JSON object a line) and
writes its outputs under ``<out>``. A user error is written to ``<out>/failed.json`` and exits
with status 2; a crash writes its traceback there and exits 1. The parent (``compare.launch``)
reads only these files: nothing a child prints is parsed, so framework logging cannot break it.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

from cnn_common.errors import EXIT_USER_ERROR, UserError
from cnn_common.events import Event, EventCallback
from cnn_common.files import atomic_write_json
from compare.bench_task import run_bench_task
from compare.convert_task import run_convert_task
from compare.crosseval_task import run_crosseval_task
from compare.jobs import (
    BatchJob,
    BenchJob,
    ConvertJob,
    CrossEvalJob,
    Job,
    ParityJob,
    RosettaJob,
    TrainJob,
)
from compare.layout import EVENTS_FILE, FAILED_FILE
from compare.parity_task import run_parity_task
from compare.rosetta_task import run_rosetta_task
from compare.train_task import run_train_task


def run_job(job: Job, on_event: EventCallback | None) -> None:
    """Run ``job`` in this process: training (one run or a batch), parity, bench,
    cross-evaluation, conversion or rosetta."""
    if isinstance(job, TrainJob):
        run_train_task(job, on_event)
    elif isinstance(job, BatchJob):
        for run in job.jobs:  # one failure is recorded in its folder; the batch goes on
            run.path.mkdir(parents=True, exist_ok=True)
            run_recorded(run, on_event)
    elif isinstance(job, ParityJob):
        run_parity_task(job)
    elif isinstance(job, BenchJob):
        run_bench_task(job)
    elif isinstance(job, CrossEvalJob):
        run_crosseval_task(job)
    elif isinstance(job, ConvertJob):
        run_convert_task(job)
    elif isinstance(job, RosettaJob):
        run_rosetta_task(job)
    else:
        raise TypeError(f"unknown job {type(job).__name__}")


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


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    job = Job.from_json(Path(args[0]).read_text())
    job.path.mkdir(parents=True, exist_ok=True)
    with open(job.path / EVENTS_FILE, "a", buffering=1) as events:

        def on_event(event: Event) -> None:
            events.write(event.to_json() + "\n")

        return run_recorded(job, on_event)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
