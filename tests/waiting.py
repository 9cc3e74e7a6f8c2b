"""Waiting in tests: on the event itself, never on how long work takes.

- ``wait_until`` polls for a condition with a deadline that scales (``scaled``) and fails
  saying what it waited for;
- ``hold_env``, ``wait_held`` and ``release`` hold a child process at a known point (a training
  step, a file about to be written; see ``tests/hold/sitecustomize.py``), so that a run a test
  must interrupt cannot end before the interruption arrives.

Deadlines are generous for a busy 2-core machine; ``$CNN_TEST_TIME_FACTOR`` (default 1)
multiplies every one of them on a slower one.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

HOLD_DIR = Path(__file__).resolve().parent / "hold"


def scaled(seconds: float) -> float:
    """``seconds`` times ``$CNN_TEST_TIME_FACTOR`` (default 1)."""
    return seconds * float(os.environ.get("CNN_TEST_TIME_FACTOR") or 1)


def wait_until(
    condition: Callable[[], object],
    what: str,
    seconds: float,
    proc: subprocess.Popen | None = None,
    interval: float = 0.05,
) -> None:
    """Poll ``condition`` until it is true; fail naming ``what`` after ``scaled(seconds)``, or
    as soon as ``proc`` (the process expected to make it true) has ended."""
    deadline = time.monotonic() + scaled(seconds)
    while not condition():
        if proc is not None and proc.poll() is not None:
            out = proc.communicate()
            raise AssertionError(f"waiting for {what}: the process ended first ({out})")
        if time.monotonic() > deadline:
            raise AssertionError(f"waiting for {what}: not within {scaled(seconds):.0f} s")
        time.sleep(interval)


def hold_env(
    env: dict[str, str], folder: Path, point: str, framework: str | None = None
) -> dict[str, str]:
    """``env`` for a child that holds at ``point`` (``step:N``, ``write:NAME``), in a run of
    ``framework`` if given, until ``release(folder)``."""
    path = os.pathsep.join(p for p in (str(HOLD_DIR), env.get("PYTHONPATH", "")) if p)
    spec = {"folder": str(folder), "point": point, "framework": framework}
    return {**env, "PYTHONPATH": path, "CNN_TEST_HOLD": json.dumps(spec)}


def wait_held(folder: Path, what: str, proc: subprocess.Popen, seconds: float = 300) -> int:
    """Wait until a process started with ``hold_env(..., folder, ...)`` holds; its pid."""
    held = folder / "held"
    wait_until(held.exists, f"{what} to hold at its point", seconds, proc)
    return int(held.read_text())


def release(folder: Path) -> None:
    """Let the held process go on."""
    (folder / "release").touch()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
