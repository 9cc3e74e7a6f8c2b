"""``dev.py test``: the tests two at a time, then the ``idle`` ones alone, with the user's
marker expression, seed and exit status carried through."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def dev(monkeypatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("dev_under_test", REPO / "dev.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(monkeypatch, dev: ModuleType, codes: list[int]) -> list[list[str]]:
    """Replace the pytest processes by ones that exit with ``codes`` in turn."""
    calls: list[list[str]] = []

    def run(command, cwd=None, check=False):
        calls.append(command[3:])  # after `python -m pytest`
        return subprocess.CompletedProcess(command, codes[len(calls) - 1])

    monkeypatch.setattr(dev.subprocess, "run", run)
    return calls


def test_two_passes_the_idle_tests_alone(monkeypatch, dev) -> None:
    calls = record(monkeypatch, dev, [0, 0])
    assert dev.run_tests(["-x"]) == 0
    assert calls == [
        ["-n", "2", "--dist", "loadfile", "-m", "(not grid) and not idle", "-x"],
        ["-m", "(not grid) and idle", "-x"],
    ]


def test_the_users_marks_and_a_shared_random_seed(monkeypatch, dev) -> None:
    calls = record(monkeypatch, dev, [0, 5])
    assert dev.run_tests(["-m", "not slow", "--random-order"]) == 0  # 5: no idle test chosen
    (seed,) = [a for a in calls[0] if a.startswith("--random-order-seed=")]
    assert calls[0][5] == "(not slow) and not idle" and calls[1][1] == "(not slow) and idle"
    assert seed in calls[1]  # both passes (and every worker) draw the same order


def test_a_failure_in_either_pass_fails_the_run(monkeypatch, dev) -> None:
    record(monkeypatch, dev, [0, 1])
    assert dev.run_tests([]) == 1
    record(monkeypatch, dev, [1, 0])
    assert dev.run_tests([]) == 1
    record(monkeypatch, dev, [5, 5])
    assert dev.run_tests([]) == 5


def test_an_interrupted_first_pass_stops_there(monkeypatch, dev) -> None:
    calls = record(monkeypatch, dev, [2, 0])
    assert dev.run_tests([]) == 2 and len(calls) == 1


def test_the_users_own_workers_mean_one_pass_as_given(monkeypatch, dev) -> None:
    calls = record(monkeypatch, dev, [0])
    assert dev.run_tests(["-n", "0", "tests/test_dev.py"]) == 0
    assert calls == [["-n", "0", "tests/test_dev.py"]]


def test_the_idle_marker_is_declared() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--markers"], cwd=REPO, capture_output=True, text=True
    )
    assert "@pytest.mark.idle:" in done.stdout


@pytest.mark.parametrize(("workers", "expected"), [("2", "1"), ("0", "unset")])
def test_xdist_workers_compute_with_one_thread_each(tmp_path, workers, expected) -> None:
    probe = tmp_path / "test_probe.py"
    probe.write_text(
        "import os\n"
        "def test_threads():\n"
        f"    assert os.environ.get('OMP_NUM_THREADS', 'unset') == {expected!r}\n"
        f"    assert os.environ.get('TF_NUM_INTRAOP_THREADS', 'unset') == {expected!r}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_THREADS")}
    env.pop("PYTEST_XDIST_WORKER", None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", workers, "-p", "tests.conftest", str(probe)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
