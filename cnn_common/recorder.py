"""The run recorder: what every trainer does alike while it trains, written once.

A trainer tells its ``RunRecorder`` when an epoch begins, the loss and the number of correct
predictions of every step, and the validation result of every epoch; the recorder keeps the
per-step losses and the epoch records, times the epochs, stops a NaN loss, sends the progress
events (``cnn_common.events``) and, at the end, writes the weights and the run record and only
then sends ``End``. Its ``state()`` goes into every checkpoint and ``restore`` puts it back, so
a resumed run continues the history of the killed one. The trainers differ only in how they
compute a step, which is the framework difference the project is about.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from cnn_common.batches import steps_per_epoch
from cnn_common.data import Data
from cnn_common.errors import UserError
from cnn_common.events import End, Epoch, Event, EventCallback, Start, Step
from cnn_common.machine import LoadMeter, environment, is_main_process
from cnn_common.results import (
    RESULT_FILE,
    WEIGHTS_FILE,
    EpochRecord,
    RunResult,
    check_finite_loss,
    finish_result,
    reset_peak_memory,
)
from cnn_common.spec import ModelSpec, TrainSpec, spec_to_dict
from cnn_common.weights import Weights, save_weights, weights_digest


class RunRecorder:
    """Records one training run and sends its events.

    Args:
        framework: the registered framework name written into the record (``numpy``, ...).
        model_spec, train_spec: the run's specs.
        data: the prepared dataset (its size, class names and test labels are read here).
        out_dir: the run's folder: ``run.json`` and ``weights.safetensors`` go there.
        init: ``shared`` (canonical initial weights), ``native`` (the framework's own) or
            ``transfer`` (``cnn_common.transfer``: layers of a trained run in shared ones).
        init_from: with ``transfer``, the weight file the loaded layers came from.
        on_event: receives every event; None sends them nowhere.
        progress: also print a progress bar and one line per epoch on the terminal.
        steps: training steps per epoch in this process (default: the whole training set in
            batches of ``train_spec.batch_size``; less for one process of several under DDP).
        native: the defaults the run handed back to the framework (``train(native=...)``).
    """

    def __init__(
        self,
        framework: str,
        model_spec: ModelSpec,
        train_spec: TrainSpec,
        data: Data,
        out_dir: str | Path,
        *,
        init: str,
        init_from: str = "",
        on_event: EventCallback | None = None,
        progress: bool = False,
        steps: int | None = None,
        native: frozenset[str] = frozenset(),
    ) -> None:
        self.framework = framework
        self.model_spec, self.train_spec = model_spec, train_spec
        self.data = data
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise UserError(
                f"{self.out_dir} is a file, not a folder",
                "give --out a folder (it is created when missing)",
            )
        self.init, self.init_from = init, init_from
        self.native = native
        self.steps = steps or steps_per_epoch(len(data.x_train), train_spec.batch_size)
        self.history: list[EpochRecord] = []
        self.step_losses: list[float] = []
        self.resumed_from = 0
        self.init_digest = ""
        self._listeners: list[EventCallback] = [on_event] if on_event is not None else []
        if progress:
            from cnn_common.progress import ConsoleProgress

            self._listeners.append(ConsoleProgress())
        self._started = time.perf_counter()
        self._load = LoadMeter()
        self._peak_scope = "process"  # until start() resets the peak
        # Under data parallelism every process records; only the first writes and reports.
        self.silent = not is_main_process()
        self._epoch = 0
        self._epoch_losses: list[float] = []
        self._correct = self._seen = 0
        self._epoch_start = self._last_step_end = 0.0

    # ------------------------------------------------------------------ state in checkpoints

    def state(self) -> dict[str, Any]:
        """JSON-safe state for a checkpoint: the history, step losses, init and the specs."""
        return {
            "history": [vars(record) for record in self.history],
            "step_losses": list(self.step_losses),
            "init": self.init,
            "init_from": self.init_from,
            "init_digest": self.init_digest,
            "spec": spec_to_dict(self.model_spec, self.train_spec),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's ``state()`` (its history and step losses)."""
        self.history = [EpochRecord(**record) for record in state["history"]]
        self.step_losses = [float(v) for v in state["step_losses"]]
        self.init = state.get("init", self.init)
        self.init_from = state.get("init_from", "")
        self.init_digest = state.get("init_digest", "")
        self.resumed_from = len(self.history)

    @property
    def epochs_done(self) -> int:
        return len(self.history)

    # ------------------------------------------------------------------ events

    def _emit(self, event: Event) -> None:
        if self.silent:
            return
        for listener in self._listeners:
            listener(event)

    def start(self, initial_weights: Weights) -> None:
        """Send ``Start``; call once, after ``restore`` if the run resumes, with the weights
        the model holds then (canonical layout). A fresh run records their digest."""
        if not self.resumed_from:
            self.init_digest = weights_digest(initial_weights)
        self._load = LoadMeter()  # how busy the machine is while this run trains
        # The record's peak memory is this run's, not that of earlier runs in this process.
        self._peak_scope = "run" if reset_peak_memory() else "process"
        self._emit(Start(self.framework, self.train_spec.epochs, self.steps, self.epochs_done))

    def begin_epoch(self, epoch: int) -> None:
        """Epoch ``epoch`` (0-based) starts: its timer and running means start from zero."""
        self._epoch = epoch
        self._epoch_losses = []
        self._correct = self._seen = 0
        self._epoch_start = self._last_step_end = time.perf_counter()

    def step(self, loss: float, correct: int, n: int) -> None:
        """One training step: its loss (before the update), correct predictions, batch size.

        Raises ``NonFiniteLossError`` when the loss is NaN or infinite.
        """
        loss = float(loss)
        self._last_step_end = time.perf_counter()
        check_finite_loss(loss, self._epoch + 1, len(self._epoch_losses) + 1)
        self._epoch_losses.append(loss)
        self._correct += int(correct)
        self._seen += int(n)
        self._emit(
            Step(
                self._epoch + 1,
                len(self._epoch_losses),
                self.steps,
                sum(self._epoch_losses) / len(self._epoch_losses),
                self._correct / self._seen,
            )
        )

    def end_epoch(self, val_loss: float, val_accuracy: float) -> EpochRecord:
        """Close the epoch with its validation result; returns (and keeps) its record.

        ``time_s`` is the time of the epoch's training steps only (validation excluded).
        """
        record = EpochRecord(
            epoch=self._epoch + 1,
            train_loss=float(np.mean(self._epoch_losses)) if self._epoch_losses else float("nan"),
            train_accuracy=self._correct / self._seen if self._seen else float("nan"),
            val_loss=float(val_loss),
            val_accuracy=float(val_accuracy),
            time_s=self._last_step_end - self._epoch_start,
        )
        self.history.append(record)
        self.step_losses.extend(self._epoch_losses)
        self._emit(Epoch(**vars(record)))
        return record

    def finish(
        self,
        *,
        backend: str,
        device: str,
        versions: dict[str, str],
        test_loss: float,
        predictions: np.ndarray,
        weights: Weights,
        threads: int,
        kernels: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> RunResult:
        """Write ``weights.safetensors`` and ``run.json``, then send ``End``; return the record.

        ``predictions (N,)`` are the test-set classes, ``weights`` the final canonical weights,
        ``threads`` the CPU threads the framework computed with and ``kernels`` the builds of
        its compute libraries (oneDNN, cuDNN, ...), which go into the record's environment.
        A process other than the first of a distributed run returns the record unwritten.
        """
        extra = dict(extra or {})
        if self.resumed_from:
            extra["resumed_from_epoch"] = self.resumed_from
        result = finish_result(
            framework=self.framework,
            backend=backend,
            device=device,
            versions=versions,
            dataset=self.data.name,
            class_names=self.data.class_names,
            model_spec=self.model_spec,
            train_spec=self.train_spec,
            init=self.init,
            init_from=self.init_from,
            history=self.history,
            step_losses=self.step_losses,
            test_loss=test_loss,
            y_test=self.data.y_test,
            y_pred=predictions,
            n_train=len(self.data.x_train),
            n_val=len(self.data.x_val),
            init_digest=self.init_digest,
            native=self.native,
            wall_time_s=time.perf_counter() - self._started,
            extra=extra,
        )
        result.threads = threads
        result.peak_memory_scope = self._peak_scope
        result.load = self._load.read(threads)
        result.environment = {**environment(), **(kernels or {})}
        if self.silent:
            return result
        save_weights(self.out_dir / WEIGHTS_FILE, weights, self.model_spec, self.train_spec)
        result.to_json(self.out_dir / RESULT_FILE)
        self._emit(End(result.test_loss, result.test_accuracy))
        return result
