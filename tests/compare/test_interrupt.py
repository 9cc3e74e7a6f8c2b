"""Interruptions lose nothing: Ctrl-C during `cnn-compare run`, SIGKILL at any moment (a
checkpoint half written included) then --resume, a truncated newest checkpoint, a full disk.

Every run here is small (600 training images, 200 for validation and test) and goes through
the command lines a user types.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cnn_common.results import RESULT_FILE, WEIGHTS_FILE, RunResult
from cnn_common.weights import load_weights
from compare.engine.layout import run_dir
from compare.engine.lock import LOCK_FILE
from tests.waiting import hold_env, scaled, wait_held, wait_until

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SMALL = ["--subset", "600", "--batch-size", "100", "--eval-subset", "200", "--quiet"]
TRAINERS = ("numpy-cnn", "keras-cnn", "lightning-cnn", "pytorch-cnn")


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}


def trainer(prog: str, out: Path, epochs: int, *extra: str) -> list[str]:
    return [str(BIN / prog), "train", *SMALL, "--epochs", str(epochs), "--out", str(out), *extra]


def run(command: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, capture_output=True, text=True, env=env(), cwd=REPO, timeout=scaled(timeout)
    )


def same_record(a: RunResult, b: RunResult) -> None:
    """The records of two runs of one configuration agree where a resumed run must."""
    assert a.init_digest == b.init_digest
    assert a.step_losses == b.step_losses
    assert [h.val_loss for h in a.history] == [h.val_loss for h in b.history]
    assert (a.test_loss, a.predictions) == (b.test_loss, b.predictions)


def same_weights(a: Path, b: Path) -> None:
    wa, wb = load_weights(a / WEIGHTS_FILE)[0], load_weights(b / WEIGHTS_FILE)[0]
    assert wa.keys() == wb.keys()
    for name in wa:
        np.testing.assert_array_equal(wa[name], wb[name], err_msg=name)


def leftover_processes(marker: str) -> list[str]:
    """Command lines of live processes that mention ``marker`` (/proc, no psutil)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in raw.decode(errors="replace") and state != "Z":
            found.append(raw.replace(b"\0", b" ").decode(errors="replace"))
    return found


# ----------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_stops_the_workers_keeps_what_finished_and_says_how_to_resume(
    tmp_path: Path, data_dir: Path
) -> None:
    out, hold = tmp_path / "out", tmp_path / "hold"
    command = [str(BIN / "cnn-compare"), "run", "--frameworks", "numpy,pytorch", *SMALL[:-1]]
    # A new session, as a terminal's: Ctrl-C reaches the run and its worker alike. The second
    # framework holds at its first training step, so the run cannot end before the Ctrl-C.
    # SIGINT as a terminal leaves it: a suite started in the background of a shell without job
    # control (`pytest &`) hands its children SIGINT ignored, and a Ctrl-C would reach nothing.
    proc = subprocess.Popen(
        [*command, "--epochs", "4", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=hold_env(env(), hold, "step:1", framework="pytorch"),
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wait_held(hold, "the second framework (pytorch) to start training", proc)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        stdout, stderr = proc.communicate(timeout=scaled(60))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its workers: nothing left behind
        stdout, stderr = proc.communicate()
        pytest.fail(f"the run went on after Ctrl-C:\n{stdout}{stderr}")
    assert proc.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr
    assert f"cnn-compare run --resume --out {out}" in stderr
    assert "cnn-compare: interrupted" in stderr
    first = run_dir(out, "numpy", 0)
    assert (first / RESULT_FILE).is_file()
    assert not (run_dir(out, "pytorch", 0) / RESULT_FILE).exists()
    assert not (out / LOCK_FILE).exists()
    # a worker ends within moments of its parent
    wait_until(lambda: not leftover_processes(str(out)), "the workers to end", 30, interval=0.2)
    assert leftover_processes(str(out)) == []

    record = (first / RESULT_FILE).stat().st_mtime_ns
    resumed = run([str(BIN / "cnn-compare"), "run", "--resume", "--out", str(out), "--quiet"])
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (first / RESULT_FILE).stat().st_mtime_ns == record  # kept, not trained again
    finished = RunResult.from_json(run_dir(out, "pytorch", 0) / RESULT_FILE)
    assert len(finished.history) == 4


# ----------------------------------------------------------------------------- SIGKILL

# Kill points chosen by events (the same every time), and from outside at a fraction of the
# run's own second epoch into its third (wherever in the step's work they land).
KILLS: dict[str, str | float] = {
    "mid-epoch-1": "step:3",  # before any checkpoint: the resume starts afresh
    "mid-epoch-2": "step:9",  # after checkpoint 1
    "writing-checkpoint-2": "write:epoch-0002",  # its temporary file full, not yet renamed
    "writing-the-record": "write:run.json",  # the weights written, the record not
    "0.2-epochs-into-epoch-3": 0.2,
    "0.6-epochs-into-epoch-3": 0.6,
}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Per trainer, made once: the folder of an uninterrupted 3-epoch run."""
    made: dict[str, Path] = {}

    def get(prog: str) -> Path:
        if prog not in made:
            out = tmp_path_factory.mktemp(prog) / "whole"
            done = run(trainer(prog, out, 3))
            assert done.returncode == 0, done.stderr
            made[prog] = out
        return made[prog]

    return get


def kill_from_outside(prog: str, out: Path, into_third: float) -> None:
    """SIGKILL ``prog``'s 3-epoch run into ``out`` ``into_third`` of its second epoch's time
    after its second checkpoint appeared.

    The run holds before writing its record, so a kill that comes later than the third epoch's
    end (a machine busier in the second epoch than in the third) still finds it unfinished.
    """
    hold = out.with_name(f"{out.name}-hold")
    proc = subprocess.Popen(
        trainer(prog, out, 3),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=hold_env(env(), hold, f"write:{RESULT_FILE}"),
    )
    seen = []
    for epoch in (1, 2):
        checkpoint = f"epoch-000{epoch}*"
        wait_until(
            lambda: list((out / "checkpoints").glob(checkpoint)),  # noqa: B023 - called here
            f"{prog}'s checkpoint {epoch}",
            300,
            proc,
            interval=0.005,
        )
        seen.append(time.monotonic())
    time.sleep(into_third * (seen[1] - seen[0]))
    proc.kill()
    proc.wait()


@pytest.mark.parametrize(
    ("prog", "kill"),
    [(prog, kill) for prog in ("numpy-cnn", "pytorch-cnn") for kill in KILLS],
)
def test_sigkill_at_any_moment_then_resume_equals_an_uninterrupted_run(
    prog: str,
    kill: str,
    tmp_path: Path,
    data_dir: Path,
    uninterrupted: Callable[[str], Path],
) -> None:
    whole = uninterrupted(prog)
    out = tmp_path / "killed"
    when = KILLS[kill]
    if isinstance(when, float):
        kill_from_outside(prog, out, when)
    else:
        child = [sys.executable, "-m", "tests.compare.kill_child", when, prog]
        killed = run([*child, *trainer(prog, out, 3)[1:]])
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        if when.startswith("write:epoch"):
            names = [p.name for p in (out / "checkpoints").iterdir()]
            assert any(n.startswith(".epoch-0002") for n in names), names  # cut mid-write
            assert not any(n.startswith("epoch-0002") for n in names), names
    assert not (out / RESULT_FILE).exists(), "the kill came after the run finished"
    resumed = run(trainer(prog, out, 3, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    if prog == "numpy-cnn":
        same_weights(whole, out)  # bit-identical
    same_record(RunResult.from_json(whole / RESULT_FILE), RunResult.from_json(out / RESULT_FILE))


# ----------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("prog", TRAINERS)
def test_a_truncated_newest_checkpoint_falls_back_to_the_one_before(
    prog: str, tmp_path: Path, data_dir: Path
) -> None:
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    done = run(trainer(prog, whole, 2))
    assert done.returncode == 0, done.stderr
    shutil.copytree(whole, cut)
    newest = next((cut / "checkpoints").glob("epoch-0002*"))
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    (cut / RESULT_FILE).unlink()  # as if killed after writing it, before the record
    (cut / WEIGHTS_FILE).unlink()
    resumed = run(trainer(prog, cut, 2, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert re.search(rf"checkpoint {newest.name} is unreadable .*falling back", resumed.stderr)
    record = RunResult.from_json(cut / RESULT_FILE)
    assert record.extra["resumed_from_epoch"] == 1
    same_record(RunResult.from_json(whole / RESULT_FILE), record)


# ----------------------------------------------------------------------------- a full disk


def disk_full_for(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes of the file ``name`` fail as on a full disk, once their data is half written."""
    fsync = os.fsync

    def fsync_or_full(fd: int) -> None:
        if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(f".{name}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_or_full)


def no_partial_files(folder: Path) -> None:
    assert not [p for p in folder.rglob(".*") if p.is_file()], "a temporary file was left"


def test_a_full_disk_during_a_checkpoint_stops_the_trainer_cleanly(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from numpy_cnn.__main__ import main

    out = tmp_path / "out"
    disk_full_for("epoch-0002", monkeypatch)
    assert main(["train", *SMALL, "--epochs", "3", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "numpy-cnn: error: no space left on the device to write" in err
    assert "epoch-0002.npz" in err and "fix: free some disk space" in err
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["epoch-0001.npz"]
    assert not (out / RESULT_FILE).exists()
    no_partial_files(out)
    monkeypatch.undo()
    assert main(["train", *SMALL, "--epochs", "3", "--out", str(out), "--resume"]) == 0
    assert RunResult.from_json(out / RESULT_FILE).extra["resumed_from_epoch"] == 1


def test_a_full_disk_while_reporting_keeps_the_old_report(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from compare.__main__ import main

    out = tmp_path / "out"
    assert main(["run", "--frameworks", "numpy", *SMALL, "--epochs", "1", "--out", str(out)]) == 0
    before = (out / "report.html").read_bytes()
    capsys.readouterr()
    disk_full_for("report.html", monkeypatch)
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert "cnn-compare: error: no space left on the device to write" in err
    assert "report.html" in err and "fix:" in err
    assert (out / "report.html").read_bytes() == before
    no_partial_files(out)
