"""A trainer's command line that kills itself with SIGKILL at a chosen event.

``python -m tests.compare.kill_child WHEN PROG ARGS...`` runs ``PROG`` (``numpy-cnn``,
``pytorch-cnn``, ...) with ``ARGS`` in this process and sends itself SIGKILL

- ``step:N``: as the N-th training step (counted over all epochs) is recorded;
- ``write:NAME``: while writing the file NAME (``epoch-0002``, ``run.json``): its temporary
  file is complete on disk, the rename that would make it the real file has not happened.

A SIGKILL from inside lands at the same point every time, and is as abrupt as one from outside.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from pathlib import Path

from cnn_common.recorder import RunRecorder

MODULES = {
    "numpy-cnn": "numpy_cnn.__main__",
    "keras-cnn": "keras_cnn.__main__",
    "lightning-cnn": "lightning_cnn.__main__",
    "pytorch-cnn": "pytorch_cnn.__main__",
}


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> int:
    when, prog, *args = sys.argv[1:]
    kind, _, what = when.partition(":")
    if kind == "step":
        steps = {"seen": 0}
        record_step = RunRecorder.step

        def step(self: RunRecorder, loss: float, correct: int, n: int) -> None:
            steps["seen"] += 1
            if steps["seen"] == int(what):
                die()
            record_step(self, loss, correct, n)

        RunRecorder.step = step  # type: ignore[method-assign]
    elif kind == "write":
        replace = os.replace

        def replace_or_die(source: str | os.PathLike, target: str | os.PathLike) -> None:
            if Path(target).name.startswith(what):
                die()
            replace(source, target)

        os.replace = replace_or_die
    else:
        raise SystemExit(f"unknown kill point {when!r}")
    return importlib.import_module(MODULES[prog]).main(args)


if __name__ == "__main__":
    sys.exit(main())
