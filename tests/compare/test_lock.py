"""One run at a time in a results folder (``compare.engine.lock``): a second run refuses and names
the first; a lock left by a killed run is taken over, saying so."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnn_common.errors import UserError
from cnn_common.results import RESULT_FILE
from compare.engine.layout import run_dir
from compare.engine.lock import LOCK_FILE, FolderLock
from tests.waiting import hold_env, pid_alive, release, scaled, wait_held, wait_until

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SMALL = ["--subset", "300", "--eval-subset", "100", "--batch-size", "100", "--quiet"]


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def write_lock(folder: Path, **holder: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "command": "cnn-compare run"}
    path.write_text(json.dumps({**mine, "started": "2024-05-01 12:00:00", **holder}))
    return path


def test_the_lock_is_created_with_its_holder_and_removed(tmp_path: Path) -> None:
    with FolderLock(tmp_path / "out") as lock:
        holder = json.loads(lock.path.read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        assert holder["command"] and holder["started"]
    assert not lock.path.exists()


def test_a_second_run_is_refused_with_the_first_named(tmp_path: Path) -> None:
    path = write_lock(tmp_path, command="cnn-compare run --out x")
    with pytest.raises(UserError) as refused:
        FolderLock(tmp_path).acquire()
    message = str(refused.value)
    assert f"pid {os.getpid()} on {socket.gethostname()}" in message
    assert "`cnn-compare run --out x`" in message and "started 2024-05-01 12:00:00" in message
    assert f"kill {os.getpid()}" in message and "choose another --out" in message
    assert json.loads(path.read_text())["command"] == "cnn-compare run --out x"  # untouched


def test_a_lock_whose_process_is_gone_is_taken_over_saying_so(tmp_path: Path) -> None:
    gone = dead_pid()
    write_lock(tmp_path, pid=gone)
    said: list[str] = []
    with FolderLock(tmp_path, said.append) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert len(said) == 1 and f"pid {gone}" in said[0] and "taking it over" in said[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing left beside it


def test_a_lock_of_another_host_is_never_taken_over(tmp_path: Path) -> None:
    path = write_lock(tmp_path, pid=dead_pid(), host="elsewhere")
    with pytest.raises(UserError, match=f"on elsewhere.*delete {path}"):
        FolderLock(tmp_path).acquire()
    assert path.exists()


def test_an_empty_lock_is_a_run_starting_until_it_is_old(tmp_path: Path) -> None:
    path = tmp_path / LOCK_FILE
    path.write_text("")
    with pytest.raises(UserError, match="just starting"):
        FolderLock(tmp_path).acquire()
    an_hour_ago = time.time() - 3600
    os.utime(path, (an_hour_ago, an_hour_ago))
    said: list[str] = []
    with FolderLock(tmp_path, said.append):
        pass
    assert "empty or unreadable" in said[0]


def test_an_out_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        FolderLock(tmp_path / "out").acquire()


# ----------------------------------------------------------------------------- the commands


def cnn_compare(*args: str) -> list[str]:
    return [str(BIN / "cnn-compare"), *args]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}


def wait_for(path: Path, proc: subprocess.Popen) -> None:
    wait_until(path.exists, f"{path} to appear", 120, proc)


def test_two_runs_into_one_folder_the_second_refuses(tmp_path: Path, data_dir: Path) -> None:
    out, hold = tmp_path / "out", tmp_path / "hold"
    command = cnn_compare("run", "--frameworks", "numpy", *SMALL, "--epochs", "2", "--out")
    first = subprocess.Popen(  # held at its first step until the second has come and gone
        [*command, str(out), "--subset", "3000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=hold_env(env(), hold, "step:1"),
    )
    wait_for(out / LOCK_FILE, first)
    wait_held(hold, "the first run to train", first)
    second = subprocess.run(
        [*command, str(out)], capture_output=True, text=True, env=env(), timeout=scaled(120)
    )
    release(hold)
    assert second.returncode == 2, second.stderr
    assert "Traceback" not in second.stderr
    assert f"is in use by another run: pid {first.pid} on {socket.gethostname()}" in second.stderr
    assert f"`cnn-compare run --frameworks numpy {' '.join(SMALL)}" in second.stderr
    assert "started 20" in second.stderr and "fix: wait for it to finish" in second.stderr
    stdout, stderr = first.communicate(timeout=scaled(300))
    assert first.returncode == 0, stderr  # the first run was not disturbed
    assert (run_dir(out, "numpy", 0) / RESULT_FILE).is_file()
    assert not (out / LOCK_FILE).exists()


def test_ablate_refuses_a_folder_in_use(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from compare.engine.lock import FolderLock; "
            "FolderLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(600)",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env(),
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        refused = subprocess.run(
            cnn_compare("ablate", "--frameworks", "numpy", *SMALL, "--out", str(out)),
            capture_output=True,
            text=True,
            env=env(),
            timeout=scaled(120),
        )
    finally:
        holder.kill()
        holder.wait()
    assert refused.returncode == 2, refused.stderr
    assert f"is in use by another run: pid {holder.pid}" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # the ablation never started


def test_a_killed_run_leaves_no_stuck_folder(tmp_path: Path, data_dir: Path) -> None:
    out, hold = tmp_path / "out", tmp_path / "hold"
    command = cnn_compare("run", "--frameworks", "numpy", *SMALL, "--epochs", "2", "--out")
    killed = subprocess.Popen(  # held at its first step: it cannot finish before the kill
        [*command, str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=hold_env(env(), hold, "step:1"),
    )
    wait_for(run_dir(out, "numpy", 0) / "events.jsonl", killed)
    worker = wait_held(hold, "the run to train", killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    # the worker gets SIGTERM when its parent dies
    wait_until(lambda: not pid_alive(worker), "the worker to end with its parent", 30)
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == killed.pid  # left behind
    resumed = subprocess.run(
        cnn_compare("run", "--resume", "--out", str(out), "--quiet"),
        capture_output=True,
        text=True,
        env=env(),
        timeout=scaled(300),
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"pid {killed.pid}" in resumed.stdout and "taking it over" in resumed.stdout
    assert (run_dir(out, "numpy", 0) / RESULT_FILE).is_file()
    assert not (out / LOCK_FILE).exists()
