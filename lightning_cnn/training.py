"""Training with a Lightning ``Trainer``: ``LitCNN``, ``ImageDataModule`` and the run record.

``out_dir`` receives ``run.json``, ``weights.safetensors``, ``checkpoints/epoch-NNNN.ckpt``
(Lightning checkpoints, one per epoch, written atomically; ``resume=True`` continues from the
newest readable one), ``csv_logs/`` and, when TensorBoard is installed, ``tensorboard/``.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch

from cnn_common.batches import steps_per_epoch
from cnn_common.data import Data
from cnn_common.files import check_resumable
from cnn_common.gpu import set_torch
from cnn_common.phases import Phases, StepClock
from cnn_common.recorder import RunRecorder
from cnn_common.results import RunResult
from cnn_common.spec import ModelSpec, TrainSpec, spec_to_dict
from cnn_common.trainer import TrainCall, contract_train
from cnn_common.weights import Weights
from lightning_cnn.callbacks import (
    SUFFIX,
    AtomicCheckpointIO,
    EpochCheckpoint,
    RecorderCallback,
    make_loggers,
)
from lightning_cnn.datamodule import ImageDataModule
from lightning_cnn.framework import FRAMEWORK
from lightning_cnn.model import set_weights
from lightning_cnn.module import LitCNN
from pytorch_cnn.training import finish_run, torch_device

VERSIONED = ("torch", "lightning", "torchmetrics", "numpy")


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's info lines ("GPU available: ...") and its advice warnings."""
    names = ("lightning.pytorch", "lightning.fabric", "lightning")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="lightning")
        for logger in loggers:
            logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def _resumable_checkpoint(path: Path, spec_data: dict[str, Any]) -> Path:
    """``path`` if it is a readable checkpoint of this spec (else it raises)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    check_resumable(state["callbacks"]["RecorderCallback"]["spec"], spec_data, path.parent)
    return path


def make_trainer(
    out: Path,
    recorder: RunRecorder,
    where: torch.device,
    devices: int,
    epochs: int,
    callbacks: Iterable[L.Callback] = (),
    max_steps: int = -1,
) -> L.Trainer:
    """The Trainer ``train`` fits with: the recorder's callback, a checkpoint per epoch, the
    loggers, Lightning's DDP for ``devices > 1``; ``callbacks`` are added after them."""
    return L.Trainer(
        accelerator="gpu" if where.type == "cuda" else "cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        max_epochs=epochs,
        max_steps=max_steps,
        callbacks=[RecorderCallback(recorder), EpochCheckpoint(out), *callbacks],
        plugins=[AtomicCheckpointIO()],
        logger=make_loggers(out),
        default_root_dir=out,
        use_distributed_sampler=False,  # the data module shards the shared batch order
        num_sanity_val_steps=0,
        enable_checkpointing=False,  # EpochCheckpoint writes them, named as everywhere
        enable_progress_bar=False,  # the recorder prints the same progress as every trainer
        enable_model_summary=False,
    )


@contract_train(FRAMEWORK)
def train(run: TrainCall) -> RunResult:
    """Train ``LitCNN`` on ``data`` with a Trainer and write the run record to ``out_dir``
    (the logs too: ``csv_logs/``, ``tensorboard/``).

    ``init_weights`` None -> PyTorch's initialisers. ``native``: defaults handed back to
    PyTorch: ``order`` (a shuffling ``DataLoader``'s batches), ``padding`` (PyTorch's own
    'same' placement); ``optimizer`` changes nothing (the spec's torch-convention Adam is
    ``torch.optim.Adam``). ``name`` defaults to ``lightning``. ``devices``: processes (CPU) or
    GPUs; more than one trains with Lightning's DDP, which starts the other processes by
    running this same program again; each takes its share of every epoch's shared batches (the
    record's step losses are the first process's), and only the first writes the run's files.
    """
    spec, train_spec, data, devices = run.spec, run.train_spec, run.data, run.devices
    where = torch_device(run.device)
    if where.type == "cuda":
        set_torch(train_spec)  # the spec's TF32 and determinism, in every DDP process
    model = LitCNN(spec, train_spec, native_padding="padding" in run.native)
    run.initialise(model, set_weights)
    recorder = run.new_recorder()
    spec_data = spec_to_dict(spec, train_spec)
    found = run.resume_checkpoint(SUFFIX, lambda path: _resumable_checkpoint(path, spec_data))
    with quiet_lightning():
        trainer = make_trainer(run.out_dir, recorder, where, devices, train_spec.epochs)
        native_order = "order" in run.native
        datamodule = ImageDataModule.from_data(data, train_spec, native_order=native_order)
        trainer.fit(model, datamodule=datamodule, ckpt_path=found[1] if found else None)
    return finish_run(recorder, model, data, trainer.strategy.root_device, VERSIONED, devices)


class PhaseClock(L.Callback):
    """Times each training step from the Trainer's hooks: ``data`` from the end of the last
    step to the start of this one (the loader and Lightning's loop), ``forward`` to
    ``on_before_backward``, ``backward`` to ``on_after_backward``, ``optimizer`` to the end of
    the step (the update, then Lightning's logging and bookkeeping)."""

    def __init__(self) -> None:
        self.clock = StepClock()
        self._ended: float | None = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, i: int) -> None:
        self.clock.start()
        if self._ended is not None:
            self.clock.add("data", time.perf_counter() - self._ended)
            self.clock.skip()

    def on_before_backward(self, trainer: L.Trainer, pl_module: Any, loss: Any) -> None:
        self.clock.mark("forward")

    def on_after_backward(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.clock.mark("backward")

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, i: int
    ) -> None:
        self.clock.mark("optimizer")
        self.clock.end_step()
        self._ended = time.perf_counter()


def phase_times(
    spec: ModelSpec, train_spec: TrainSpec, data: Data, init_weights: Weights, steps: int
) -> Phases:
    """``steps`` steps of the Trainer ``train`` uses, from ``init_weights`` on the CPU, each
    timed by phase from Lightning's hooks (``PhaseClock``; ``cnn_common.phases``)."""
    model = LitCNN(spec, train_spec)
    set_weights(model, init_weights)
    clock = PhaseClock()
    with tempfile.TemporaryDirectory() as tmp, quiet_lightning():
        out = Path(tmp)
        recorder = RunRecorder(FRAMEWORK.name, spec, train_spec, data, out, init="shared")
        epochs = -(-steps // steps_per_epoch(len(data.x_train), train_spec.batch_size))
        trainer = make_trainer(out, recorder, torch.device("cpu"), 1, epochs, [clock], steps)
        trainer.fit(model, datamodule=ImageDataModule.from_data(data, train_spec))
    phases = clock.clock.phases
    phases.note = (
        "from Lightning's hooks: data is the time between steps (loader and loop), optimiser "
        "the update and Lightning's bookkeeping after it"
    )
    return phases
