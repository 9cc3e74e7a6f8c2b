"""The trainer skeleton: what every framework's ``train`` does around its own loop, written once.

A ``train`` opens a ``TrainingRun`` with its declaration (``FrameworkInfo``), which checks the
arguments every framework reads alike, and then differs from the others only where its
framework does::

    run = TrainingRun(FRAMEWORK, out_dir, init_weights, native=native, devices=devices, name=name)
    model = build(spec, ...)                    # the framework's own model
    run.initialise(model, set_weights)          # the shared weights when given, else its own
    recorder = run.recorder(spec, train_spec, data, on_event, progress)
    run.resume_or_start_clean(resume, SUFFIX, lambda path: load_checkpoint(path, model, ...))
    recorder.start(...)                         # then the framework's loop, and
    return recorder.finish(...)
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from cnn_common.data import Data
from cnn_common.errors import UserError
from cnn_common.events import EventCallback
from cnn_common.files import load_latest_checkpoint, remove_checkpoints
from cnn_common.framework import FrameworkInfo, check_native
from cnn_common.recorder import RunRecorder
from cnn_common.spec import ModelSpec, TrainSpec
from cnn_common.weights import Weights

T = TypeVar("T")  # what a framework's checkpoint reader returns


class TrainingRun:
    """One call of a framework's ``train``: its checked arguments and the shared bookkeeping.

    Args:
        info: the framework's declaration (the record's name, its package for messages, whether
            it trains on several devices).
        out_dir: the run's folder.
        init_weights: canonical starting weights (``init="shared"``), or None for the
            framework's own initialisers (``init="native"``).
        native: ``train``'s ``native`` argument; an unknown choice raises ``ValueError``.
        devices: processes or GPUs to train on; more than one for a framework whose declaration
            says it cannot (``data_parallel=False``) raises ``UserError``.
        name: the framework name the record carries (default: the declaration's).
    """

    def __init__(
        self,
        info: FrameworkInfo,
        out_dir: str | Path,
        init_weights: Weights | None,
        *,
        native: Iterable[str] = (),
        devices: int = 1,
        name: str | None = None,
    ) -> None:
        self.info = info
        self.native = check_native(native)
        if devices != 1 and not info.data_parallel:
            raise UserError(
                f"{info.package} trains in one process, got devices={devices}",
                "train it with --devices 1; lightning and pytorch train on several (DDP)",
            )
        self.out_dir = Path(out_dir)
        self.init_weights = init_weights
        self.init = "native" if init_weights is None else "shared"
        self.name = name or info.name

    def initialise(self, model: Any, set_weights: Callable[[Any, Weights], None]) -> None:
        """Load the shared starting weights into ``model`` when the run has them (else the
        model keeps the framework's own initialisation)."""
        if self.init_weights is not None:
            set_weights(model, self.init_weights)

    def recorder(
        self,
        spec: ModelSpec,
        train_spec: TrainSpec,
        data: Data,
        on_event: EventCallback | None,
        progress: bool,
        steps: int | None = None,
    ) -> RunRecorder:
        """The run's ``RunRecorder`` (``steps``: this process's steps per epoch, when it
        trains on a share of each epoch)."""
        return RunRecorder(
            self.name,
            spec,
            train_spec,
            data,
            self.out_dir,
            init=self.init,
            on_event=on_event,
            progress=progress,
            native=self.native,
            steps=steps,
        )

    def resume_or_start_clean(
        self, resume: bool, suffix: str, load: Callable[[Path], T]
    ) -> tuple[int, T] | None:
        """With ``resume``, ``(epochs_done, load(path))`` of the newest checkpoint ``load`` can
        read (a damaged one is skipped with a warning); otherwise, or when none is readable,
        None, with every checkpoint of an earlier run deleted so that none is resumed later."""
        found = load_latest_checkpoint(self.out_dir, suffix, load, self.warn) if resume else None
        if found is None:
            remove_checkpoints(self.out_dir)
        return found

    def warn(self, message: str) -> None:
        """Print ``package: message`` on stderr (a run goes on after a warning)."""
        print(f"{self.info.package}: {message}", file=sys.stderr, flush=True)
