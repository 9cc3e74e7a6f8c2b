"""Where runs execute: Ray tasks give the local executor's records, a killed Ray worker is
retried, and DDP on two CPU processes trains and reports once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cnn_common.events import End, Event, Start
from cnn_common.results import RESULT_FILE, RunResult
from compare.engine.launch import EventTail
from compare.engine.layout import EVENTS_FILE, run_dir
from tests.waiting import scaled, wait_until

SMALL = ["--subset", "2000", "--eval-subset", "500", "--epochs", "1", "--quiet"]


def cnn_compare(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "compare", *args],
        capture_output=True,
        text=True,
        timeout=scaled(timeout),
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


def records(out: Path) -> dict[str, RunResult]:
    return {
        p.parent.name: RunResult.from_json(p) for p in sorted(out.glob(f"runs/*/{RESULT_FILE}"))
    }


def events(folder: Path) -> list[Event]:
    tail = EventTail(folder / EVENTS_FILE)
    tail.offset = 0
    return tail.read()


def test_event_tail_reads_whole_lines_as_they_come(tmp_path: Path) -> None:
    path = tmp_path / EVENTS_FILE
    tail = EventTail(path)
    assert tail.read() == []
    first, second = Start("numpy", 2, 10, 0).to_json(), End(0.1, 0.9).to_json()
    path.write_text(first + "\n" + second[:5])  # the second line is still being written
    assert tail.read() == [Start("numpy", 2, 10, 0)]
    with open(path, "a") as handle:
        handle.write(second[5:] + "\n")
    assert tail.read() == [End(0.1, 0.9)]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--ray-address", "auto"], "--ray-address needs --executor ray"),
        (["--executor", "ray", "--in-process"], "exclude each other"),
        (["--devices", "0"], "--devices must be at least 1"),
    ],
)
def test_executor_flags_are_checked(flags: list[str], message: str, tmp_path: Path) -> None:
    done = cnn_compare("run", "--frameworks", "numpy", *SMALL, "--out", str(tmp_path), *flags)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_ray_gives_the_records_of_the_local_executor(data_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    common = ["run", "--frameworks", "numpy,pytorch", "--seeds", "2", *SMALL]
    local = cnn_compare(*common, "--out", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr[-3000:]
    ray = cnn_compare(*common, "--executor", "ray", "--out", str(tmp_path / "ray"))
    assert ray.returncode == 0, ray.stderr[-3000:]
    a, b = records(tmp_path / "local"), records(tmp_path / "ray")
    assert (
        sorted(a)
        == sorted(b)
        == [
            "numpy-seed0",
            "numpy-seed1",
            "pytorch-seed0",
            "pytorch-seed1",
        ]
    )
    for name in a:
        assert a[name].step_losses == b[name].step_losses, name
        assert (a[name].test_loss, a[name].predictions) == (b[name].test_loss, b[name].predictions)
        assert a[name].init_digest == b[name].init_digest
        assert a[name].threads == b[name].threads
    assert (tmp_path / "ray" / "report.html").is_file()


def _pids(pattern: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return [int(pid) for pid in found.split()]


@pytest.mark.slow
def test_a_killed_ray_worker_is_retried(data_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    args = ["run", "--frameworks", "numpy", "--subset", "6000", "--eval-subset", "500"]
    command = [sys.executable, "-m", "compare", *args, "--epochs", "3", "--quiet"]
    runner = subprocess.Popen(
        [*command, "--executor", "ray", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    folder = run_dir(out, "numpy", 0)
    try:
        # Kill the Ray worker running the task once the run is past its first epoch.
        checkpoint = folder / "checkpoints" / "epoch-0001.npz"
        wait_until(checkpoint.exists, "the first epoch's checkpoint", 300, runner, interval=0.1)
        workers = _pids("ray::_ray_task")
        assert workers, "no Ray worker runs the task"
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        stdout, stderr = runner.communicate(timeout=scaled(600))
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
    assert runner.returncode == 0, stderr[-3000:]
    starts = [e for e in events(folder) if isinstance(e, Start)]
    assert len(starts) >= 2 and starts[-1].start_epoch >= 1  # retried, from its checkpoint
    whole = tmp_path / "local"
    done = subprocess.run([*command, "--out", str(whole)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    a = RunResult.from_json(folder / RESULT_FILE)
    b = RunResult.from_json(run_dir(whole, "numpy", 0) / RESULT_FILE)
    assert a.step_losses == b.step_losses and a.predictions == b.predictions
    assert a.extra.get("resumed_from_epoch", 0) >= 1


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_trains_and_reports_once(data_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    out = tmp_path / "ddp"
    done = cnn_compare(
        "run", "--devices", "2", "--frameworks", "lightning", *SMALL, "--out", str(out)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    folder = run_dir(out, "lightning", 0)
    record = RunResult.from_json(folder / RESULT_FILE)
    assert record.extra["devices"] == 2
    # each of the two processes took half of the 16 batches; the record keeps the first's
    assert len(record.step_losses) == 8
    kinds = [e.kind for e in events(folder)]
    assert kinds.count("start") == 1 and kinds.count("end") == 1
    results = json.loads((out / "results.json").read_text())
    assert [row["framework"] for row in results["summary"]] == ["lightning"]
    # reported once: one result line (the memory line before it names the framework too)
    assert [line for line in done.stdout.splitlines() if line.startswith("lightning")] == [
        line for line in done.stdout.splitlines() if "test accuracy" in line
    ]
    assert done.stdout.count("test accuracy") == 1
