"""Warm workers (``compare.engine.pool``): one process serves a framework's jobs one after
another, with the same files and statuses a fresh worker gives; a worker that dies fails its
job and the next job gets a fresh one."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from cnn_common.spec import ModelSpec, TrainSpec
from compare.engine.layout import EVENTS_FILE, FAILED_FILE, JOB_FILE, LOG_FILE, worker_log
from compare.engine.pool import WorkerPool
from tests.compare.plugins import write_feature

# A job that writes its worker's pid, prints a line (its log.txt must hold it), and then does
# what it is told: nothing, fail with a user error, or die of SIGKILL.
PROBE = {
    "__init__.py": """
        from compare.engine.features import Feature
        from probe_feature.job import ProbeJob

        FEATURE = Feature(name="probe", jobs={ProbeJob: "probe_feature.task:probe"})
    """,
    "job.py": """
        from dataclasses import dataclass
        from typing import ClassVar

        from compare.engine.jobs import Job

        @dataclass(frozen=True, kw_only=True)
        class ProbeJob(Job):
            kind: ClassVar[str] = "probe"
            then: str = "end"
    """,
    "task.py": """
        import os
        import signal

        from cnn_common.errors import UserError

        def probe(job, on_event=None):
            (job.path / "pid").write_text(str(os.getpid()))
            print(f"probe in {os.getpid()}", flush=True)
            if job.then == "user-error":
                raise UserError("the probe was told to fail", "tell it otherwise")
            if job.then == "die":
                os.kill(os.getpid(), signal.SIGKILL)
    """,
}


@pytest.fixture
def probe_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The probe feature installed where the workers find it; returns the results folder."""
    root = write_feature(tmp_path / "site", name="probe", package="probe_feature", modules=PROBE)
    path = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.syspath_prepend(str(root))
    return tmp_path / "out"


def probe_job(out: Path, name: str, then: str = "end"):
    from probe_feature.job import ProbeJob  # written by the fixture

    return ProbeJob.create(
        model_spec=ModelSpec(),
        train_spec=TrainSpec(),
        out=out / name,
        framework="numpy",
        then=then,
    )


def pid(out: Path, name: str) -> int:
    return int((out / name / "pid").read_text())


def test_one_warm_worker_runs_a_frameworks_jobs_one_after_another(probe_env: Path) -> None:
    out = probe_env
    with WorkerPool(out) as pool:
        pool.start(["numpy"])
        statuses = [pool.run(probe_job(out, name)) for name in ("first", "second")]
    assert statuses == [0, 0]
    assert pid(out, "first") == pid(out, "second") != os.getpid()
    for name in ("first", "second"):
        folder = out / name
        assert json.loads((folder / JOB_FILE).read_text())["out"] == str(folder)
        assert (folder / LOG_FILE).read_text().strip() == f"probe in {pid(out, name)}"
        assert (folder / EVENTS_FILE).is_file()
        assert not (folder / FAILED_FILE).exists()
    assert worker_log(out, "numpy").is_file()


def test_a_user_error_fails_the_job_and_the_worker_serves_on(probe_env: Path) -> None:
    out = probe_env
    with WorkerPool(out) as pool:
        failed = pool.run(probe_job(out, "failed", then="user-error"))
        after = pool.run(probe_job(out, "after"))
    assert (failed, after) == (2, 0)
    failure = json.loads((out / "failed" / FAILED_FILE).read_text())
    assert failure["kind"] == "user" and "told to fail" in failure["error"]
    assert pid(out, "failed") == pid(out, "after")


def test_a_worker_that_dies_fails_its_job_and_the_next_gets_a_fresh_one(probe_env: Path) -> None:
    out = probe_env
    with WorkerPool(out) as pool:
        died = pool.run(probe_job(out, "died", then="die"))
        after = pool.run(probe_job(out, "after"))
    assert died == -signal.SIGKILL
    assert after == 0
    assert pid(out, "died") != pid(out, "after")


def test_the_workers_end_with_the_pool(probe_env: Path) -> None:
    out = probe_env
    with WorkerPool(out) as pool:
        pool.start(["numpy"])
        worker = pool.workers["numpy"]
    assert worker.proc.poll() is not None
