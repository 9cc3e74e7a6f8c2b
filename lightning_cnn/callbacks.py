"""Callbacks and loggers shared by ``train`` and the ``lightning-cnn`` CLI.

``RunRecorder`` keeps what the run record needs (every step's loss, one ``EpochRecord`` per
epoch) and sends the progress events of ``cnn_common.results``; its state travels in the
checkpoints, so a resumed run continues the history of the killed one.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import sys
import time
import types
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger

from cnn_common.results import EpochRecord, EventCallback
from cnn_common.weights import atomic_write_bytes

LAST_CHECKPOINT = "last.ckpt"
PREDICTIONS_FILE = "predictions.npz"
NOTF_MODULE = "tensorboard.compat.notf"


def make_checkpoint(dirpath: str | Path) -> ModelCheckpoint:
    """A checkpoint after every epoch in ``dirpath``, the newest also as ``last.ckpt``
    (what ``fit(ckpt_path="last")`` resumes from)."""
    return ModelCheckpoint(
        dirpath=dirpath,  # file names as Lightning writes them: epoch=E-step=S.ckpt, 0-based
        save_last=True,
        save_top_k=1,  # without a monitored metric: the newest epoch
        every_n_epochs=1,
    )


def tensorboard_available() -> bool:
    """Whether TensorBoard logging is possible (``tensorboard`` or ``tensorboardX``)."""
    return any(importlib.util.find_spec(name) for name in ("tensorboard", "tensorboardX"))


def tensorboard_without_tensorflow() -> None:
    """Make TensorBoard write its files with its own stub instead of importing TensorFlow.

    ``torch.utils.tensorboard`` reaches ``tensorboard.compat.tf``, which imports TensorFlow
    whenever it is installed; TensorFlow and PyTorch in one process fight over threads, and
    lightning_cnn never loads TensorFlow. The module ``tensorboard.compat.notf`` is
    TensorBoard's own switch for "use the stub" (its ``no_tensorflow`` build).
    """
    if "tensorflow" not in sys.modules:
        sys.modules.setdefault(NOTF_MODULE, types.ModuleType(NOTF_MODULE))


def make_loggers(root: str | Path) -> list[Logger]:
    """CSV logs under ``root/csv_logs``, and TensorBoard logs under ``root/tensorboard`` when
    TensorBoard is installed."""
    loggers: list[Logger] = [CSVLogger(root, name="csv_logs")]
    if tensorboard_available():
        tensorboard_without_tensorflow()
        loggers.append(TensorBoardLogger(root, name="tensorboard", default_hp_metric=False))
    return loggers


class RunRecorder(Callback):
    """Per-step losses, per-epoch records and progress events of a training run.

    Args:
        on_event: called with each event dict (start, step, epoch); None -> no events.

    Train loss of an epoch = mean of its step losses; train accuracy = correct / seen over the
    epoch, as the model was at each step; validation values are the epoch's ``val_loss`` and
    ``val_acc``; ``time_s`` covers the training steps only (validation excluded).
    """

    def __init__(self, on_event: EventCallback | None = None) -> None:
        self.on_event = on_event
        self.step_losses: list[float] = []
        self.history: list[EpochRecord] = []
        self._epoch_losses: list[float] = []
        self._loss_sum = 0.0
        self._correct = self._seen = 0
        self._epoch_start = self._last_step_end = 0.0

    def _emit(self, event: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._emit(
            {
                "event": "start",
                "framework": "lightning",
                "epochs": trainer.max_epochs,
                "steps_per_epoch": trainer.num_training_batches,
                "start_epoch": trainer.current_epoch,
            }
        )

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_losses = []
        self._loss_sum = 0.0
        self._correct = self._seen = 0
        self._epoch_start = self._last_step_end = time.perf_counter()

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = outputs["loss_value"]  # LitCNN.training_step returns Python numbers: no sync
        self._correct += outputs["correct"]
        self._seen += len(batch[1])
        self._epoch_losses.append(loss)
        self._loss_sum += loss
        self.step_losses.append(loss)
        self._last_step_end = time.perf_counter()
        if self.on_event is not None:
            self.on_event(
                {
                    "event": "step",
                    "epoch": trainer.current_epoch + 1,
                    "step": batch_idx + 1,
                    "steps": trainer.num_training_batches,
                    "loss": self._loss_sum / len(self._epoch_losses),
                    "accuracy": self._correct / self._seen,
                }
            )

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Validation has run by now; the checkpoint callbacks run after this one, so the
        # epoch's record is in the checkpoint written for it.
        metrics = trainer.callback_metrics
        record = EpochRecord(
            epoch=trainer.current_epoch + 1,
            train_loss=sum(self._epoch_losses) / max(len(self._epoch_losses), 1),
            train_accuracy=self._correct / max(self._seen, 1),
            val_loss=float(metrics["val_loss"]) if "val_loss" in metrics else float("nan"),
            val_accuracy=float(metrics["val_acc"]) if "val_acc" in metrics else float("nan"),
            time_s=self._last_step_end - self._epoch_start,
        )
        self.history.append(record)
        self._emit({"event": "epoch", **dataclasses.asdict(record)})

    def state_dict(self) -> dict[str, Any]:
        return {
            "step_losses": list(self.step_losses),
            "history": [dataclasses.asdict(record) for record in self.history],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.step_losses = list(state_dict["step_losses"])
        self.history = [EpochRecord(**record) for record in state_dict["history"]]


class PredictionWriter(BasePredictionWriter):
    """Write what ``Trainer.predict`` returns to ``output_dir/predictions.npz``: the class
    probabilities ``probabilities: (N, K)`` and ``predictions: (N,)`` int64; atomic.

    Args:
        output_dir: the folder; under DDP each process writes ``predictions_rank<r>.npz``.
    """

    def __init__(self, output_dir: str | Path = ".") -> None:
        super().__init__(write_interval="epoch")
        self.output_dir = Path(output_dir)

    def write_on_epoch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        predictions: Any,
        batch_indices: Any,
    ) -> None:
        probabilities = torch.cat(list(predictions)).float().cpu().numpy()  # (N, K)
        name = PREDICTIONS_FILE
        if trainer.world_size > 1:
            name = f"predictions_rank{trainer.global_rank}.npz"
        buffer = io.BytesIO()
        np.savez(buffer, probabilities=probabilities, predictions=probabilities.argmax(axis=1))
        atomic_write_bytes(self.output_dir / name, buffer.getvalue())
