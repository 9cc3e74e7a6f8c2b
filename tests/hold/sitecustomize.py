"""Holds a test's child process at a known point until the test lets it go.

Python imports ``sitecustomize`` at start-up from the first folder on ``sys.path`` that has
one; a test puts this folder first on a child's ``PYTHONPATH`` (``tests.waiting.hold_env``)
and sets ``CNN_TEST_HOLD`` to a JSON object:

- ``folder``: where the process writes ``held`` (its pid) on reaching the point, then waits
  until the test creates ``release`` there;
- ``point``: ``step:N`` (as the N-th training step of the process is recorded) or
  ``write:NAME`` (as a file whose name starts with NAME is about to be moved into place);
- ``framework`` (optional, with ``step:N``): count only the steps of a run of this framework
  (``RunRecorder.framework``).

A run held there cannot finish before the test has done what it waits to do (a Ctrl-C, a kill,
a second run); it ends early only by a signal. The first process to reach the point holds, a
later one (a retry, a resumed run) goes on. Without ``CNN_TEST_HOLD`` nothing is changed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

_replace = os.replace  # the real one, whatever a write point patches


def _hold(folder: Path) -> None:
    """Say so in ``folder/held``, then wait for ``folder/release`` or the parent's death (a
    worker that handles SIGTERM by stopping at its next step, as Lightning's trainer does,
    must reach that step)."""
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".held-{os.getpid()}"
    partial.write_text(str(os.getpid()))
    _replace(partial, folder / "held")
    parent = os.getppid()
    while not (folder / "release").exists() and os.getppid() == parent:
        time.sleep(0.02)


def _install(spec: dict[str, str]) -> None:
    folder, (kind, _, what) = Path(spec["folder"]), spec["point"].partition(":")
    framework = spec.get("framework")
    if kind == "step":
        from cnn_common.recorder import RunRecorder

        seen = {"steps": 0}
        record_step = RunRecorder.step

        def step(self: RunRecorder, loss: float, correct: int, n: int) -> None:
            if framework in (None, self.framework):
                seen["steps"] += 1
                if seen["steps"] == int(what) and not (folder / "held").exists():
                    _hold(folder)
            record_step(self, loss, correct, n)

        RunRecorder.step = step  # type: ignore[method-assign]
    elif kind == "write":
        replace = os.replace

        def replace_after_hold(source: str | os.PathLike, target: str | os.PathLike) -> None:
            if Path(target).name.startswith(what) and not (folder / "held").exists():
                _hold(folder)
            replace(source, target)

        os.replace = replace_after_hold
    else:
        raise SystemExit(f"CNN_TEST_HOLD: unknown point {spec['point']!r}")


if os.environ.get("CNN_TEST_HOLD"):
    _install(json.loads(os.environ["CNN_TEST_HOLD"]))
