"""``train``: one run of the contract with a Lightning ``Trainer``, writing the run record.

``out_dir`` receives ``run.json``, ``weights.safetensors``, ``checkpoints/`` (``last.ckpt`` and
the newest epoch; ``resume=True`` continues from ``last.ckpt``), ``csv_logs/`` and, when
TensorBoard is installed, ``tensorboard/``.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import torch

from cnn_common.data import Data
from cnn_common.errors import UserError
from cnn_common.results import (
    CHECKPOINT_DIR,
    RESULT_FILE,
    WEIGHTS_FILE,
    EventCallback,
    RunResult,
    finish_result,
    package_versions,
)
from cnn_common.spec import ModelSpec, TrainSpec
from cnn_common.weights import Weights, save_weights
from lightning_cnn.callbacks import LAST_CHECKPOINT, RunRecorder, make_checkpoint, make_loggers
from lightning_cnn.datamodule import MNISTDataModule
from lightning_cnn.model import evaluate, get_weights, set_weights
from lightning_cnn.module import LitCNN

DEVICES = ("auto", "cpu", "gpu")
VERSIONED = ("torch", "lightning", "torchmetrics", "numpy")


def accelerator_for(device: str) -> str:
    """The Trainer's ``accelerator`` for the contract's ``device`` (auto | cpu | gpu)."""
    if device not in DEVICES:
        raise UserError(f"unknown device {device!r}", f"use one of: {', '.join(DEVICES)}")
    if device == "gpu" and not torch.cuda.is_available():
        raise UserError(
            "device 'gpu' was asked for, but PyTorch sees no GPU",
            "use --device cpu (or auto), or install a CUDA build of PyTorch",
        )
    return device


def describe_device(trainer: L.Trainer) -> str:
    """``cpu`` or ``cuda:0 (NVIDIA ...)``: what the run record calls the device."""
    root = trainer.strategy.root_device
    if root.type == "cuda":
        return f"{root} ({torch.cuda.get_device_name(root)})"
    return str(root)


@contextlib.contextmanager
def quiet_lightning(quiet: bool) -> Iterator[None]:
    """Silence Lightning's info lines ("GPU available: ...") and its advice warnings."""
    if not quiet:
        yield
        return
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


def train(
    spec: ModelSpec,
    train_spec: TrainSpec,
    data: Data,
    out_dir: str | Path,
    init_weights: Weights | None = None,
    on_event: EventCallback | None = None,
    *,
    resume: bool = False,
    device: str = "auto",
    progress: bool = True,
) -> RunResult:
    """Train ``LitCNN`` on ``data`` with a Trainer and write the run record to ``out_dir``.

    Args:
        spec: the architecture.
        train_spec: optimiser, epochs, batch size, seed, augmentation, dtype.
        data: the prepared dataset (NHWC images in [0, 1], int64 labels, already split).
        out_dir: where run.json, weights.safetensors, checkpoints/ and the logs go.
        init_weights: canonical starting weights (``init="shared"``); None -> PyTorch's
            initialisers after ``torch.manual_seed(train_spec.seed)`` (``init="native"``).
        on_event: receives the start, step, epoch and end events of ``cnn_common.results``.
        resume: continue from ``checkpoints/last.ckpt`` (and its recorded history) if there
            is one; otherwise start afresh.
        device: auto | cpu | gpu.
        progress: show Lightning's progress bar and summary; False prints nothing to stdout.
    """
    out = Path(out_dir)
    checkpoints = out / CHECKPOINT_DIR
    if not resume:
        shutil.rmtree(checkpoints, ignore_errors=True)  # a stale last.ckpt must not be resumed
    out.mkdir(parents=True, exist_ok=True)
    accelerator = accelerator_for(device)
    started = time.perf_counter()

    torch.manual_seed(train_spec.seed)
    model = LitCNN(spec, train_spec)
    if init_weights is not None:
        set_weights(model, init_weights)
    datamodule = MNISTDataModule.from_data(data, train_spec)
    recorder = RunRecorder(on_event)
    with quiet_lightning(not progress):
        trainer = L.Trainer(
            accelerator=accelerator,
            devices=1,
            max_epochs=train_spec.epochs,
            callbacks=[recorder, make_checkpoint(checkpoints)],
            logger=make_loggers(out),
            default_root_dir=out,
            use_distributed_sampler=False,  # the data module shards the shared batch order
            num_sanity_val_steps=0,
            enable_progress_bar=progress,
            enable_model_summary=progress,
        )
        resume_from = "last" if resume and (checkpoints / LAST_CHECKPOINT).is_file() else None
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)

    test_loss, test_accuracy, predictions = evaluate(model, data.x_test, data.y_test)
    result = finish_result(
        framework="lightning",
        backend="torch",
        device=describe_device(trainer),
        versions=package_versions(VERSIONED),
        dataset=data.name,
        class_names=data.class_names,
        model_spec=spec,
        train_spec=train_spec,
        init="shared" if init_weights is not None else "native",
        history=recorder.history,
        step_losses=recorder.step_losses,
        test_loss=test_loss,
        y_test=data.y_test,
        y_pred=predictions,
        n_train=len(data.x_train),
        wall_time_s=time.perf_counter() - started,
    )
    save_weights(out / WEIGHTS_FILE, get_weights(model), spec, train_spec)
    result.to_json(out / RESULT_FILE)
    if on_event is not None:
        on_event({"event": "end", "test_loss": test_loss, "test_accuracy": test_accuracy})
    return result
