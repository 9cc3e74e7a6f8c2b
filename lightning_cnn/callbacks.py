"""Callbacks, loggers and the checkpoint writer of ``train`` and the ``lightning-cnn`` CLI."""

from __future__ import annotations

import importlib.util
import io
import sys
import types
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from cnn_common.files import atomic_write_bytes, atomic_write_npz, checkpoint_path
from cnn_common.recorder import RunRecorder
from pytorch_cnn.model import get_weights

LAST_CHECKPOINT = "last.ckpt"
SUFFIX = ".ckpt"
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


class RecorderCallback(Callback):
    """Feeds Lightning's hooks to a ``cnn_common.recorder.RunRecorder``.

    Args:
        recorder: the run's recorder; its state travels in every checkpoint, so a resumed run
            continues the history of the killed one.

    ``LitCNN.training_step`` returns the step's loss and correct count as Python numbers, so
    recording costs no device synchronisation. The validation values of an epoch are the
    ``val_loss`` and ``val_acc`` Lightning has computed by ``on_train_epoch_end``.
    """

    def __init__(self, recorder: RunRecorder) -> None:
        self.recorder = recorder

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.recorder.steps = trainer.num_training_batches  # this process's share under DDP
        self.recorder.start(get_weights(pl_module))

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.recorder.begin_epoch(trainer.current_epoch)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self.recorder.step(outputs["loss_value"], outputs["correct"], len(batch[1]))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        self.recorder.end_epoch(
            float(metrics["val_loss"]) if "val_loss" in metrics else float("nan"),
            float(metrics["val_acc"]) if "val_acc" in metrics else float("nan"),
        )

    def state_dict(self) -> dict[str, Any]:
        return self.recorder.state()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.recorder.restore(state_dict)


class EpochCheckpoint(Callback):
    """A checkpoint after every epoch, named as every framework names them
    (``cnn_common.files.checkpoint_path``: ``checkpoints/epoch-0003.ckpt`` after 3 epochs).

    Put it after ``RecorderCallback`` so the epoch's record is in the checkpoint of the epoch.
    """

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.save_checkpoint(checkpoint_path(self.out_dir, trainer.current_epoch + 1, SUFFIX))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, writing through ``cnn_common.files.atomic_write_bytes``:
    a run killed while a checkpoint is written keeps the previous one whole."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(path, buffer.getvalue())


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
        atomic_write_npz(
            self.output_dir / name,
            {"probabilities": probabilities, "predictions": probabilities.argmax(axis=1)},
        )
