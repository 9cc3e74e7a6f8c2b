"""Training with ``model.fit`` on the shared batch order, per-epoch checkpoints and resume.

- ``EpochBatches`` (a ``keras.utils.PyDataset``) serves ``cnn_common.batches.epoch_batches``
  for the epoch ``RunRecorder`` sets at the start of each epoch, with the shared augmentation;
  ``fit`` gets ``shuffle=False`` because Keras shuffles the batches of a finite PyDataset
  otherwise.
- ``RunRecorder`` (a ``keras.callbacks.Callback``) records the loss of every step (from the
  ``StepLoss`` metric: Keras's own ``loss`` log is the running mean over the epoch), the epoch
  records and times, raises ``NonFiniteLossError`` on a NaN/inf loss, sends the ``on_event``
  events and writes a checkpoint after every epoch.
- A checkpoint is one file, ``checkpoints/epoch-NNN.npz``, written atomically: every model
  variable (weights and the dropout seed states, which a ``.keras`` file leaves out), every
  optimiser variable (step count, moments) and the history so far. ``resume=True`` rebuilds
  the model from the spec, restores them from the newest file and fits on from there. (A
  ``.keras`` file would serve too, but Keras's serialiser imports TensorFlow whenever it is
  installed, even on the torch backend.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import keras
import numpy as np

from cnn_common.batches import augment_batch, epoch_batches
from cnn_common.data import Data
from cnn_common.errors import UserError
from cnn_common.results import (
    CHECKPOINT_DIR,
    RESULT_FILE,
    WEIGHTS_FILE,
    EpochRecord,
    RunResult,
    check_finite_loss,
    finish_result,
    package_versions,
)
from cnn_common.spec import ModelSpec, TrainSpec, spec_to_dict
from cnn_common.weights import Weights, atomic_write_bytes, save_weights
from keras_cnn.model import (
    PREDICT_BATCH,
    build,
    compile_model,
    evaluate,
    floatx,
    get_weights,
    set_weights,
    to_numpy,
)

FRAMEWORK = "keras"
_CHECKPOINT = re.compile(r"epoch-(\d{3,})\.npz")
_BACKEND_PACKAGES = {
    "tensorflow": ["tensorflow", "tensorflow-cpu"],
    "torch": ["torch"],
    "jax": ["jax", "jaxlib"],
}


class EpochBatches(keras.utils.PyDataset):
    """The training set in the shared batch order of ``epoch``: item ``step`` is
    ``(x[idx], y[idx])`` for ``idx = epoch_batches(N, batch_size, seed, epoch)[step]``,
    augmented with ``augment_batch``. ``x: (N, H, W, C)``, ``y: (N,)``.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, train_spec: TrainSpec, epoch: int = 0):
        super().__init__(workers=1, use_multiprocessing=False)
        self.x, self.y, self.spec = x, y, train_spec
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        """Serve the batches of ``epoch`` (0-based) from now on."""
        self.epoch = epoch
        self.batches = epoch_batches(len(self.x), self.spec.batch_size, self.spec.seed, epoch)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self.batches[step]
        xb = augment_batch(
            self.x[idx], self.spec.augment_shift, self.spec.seed, self.epoch, step
        )  # (B, H, W, C)
        return xb.astype(self.spec.dtype, copy=False), self.y[idx]


class RunRecorder(keras.callbacks.Callback):
    """Per-step losses, epoch records, events and per-epoch checkpoints of one ``fit``."""

    def __init__(
        self,
        dataset: EpochBatches,
        checkpoints: Path,
        state: dict[str, Any],
        on_event: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        super().__init__()
        self.dataset = dataset
        self.checkpoints = checkpoints
        self.state = state  # "history", "step_losses", "spec", "init": what a checkpoint keeps
        self.on_event = on_event
        self.steps = len(dataset)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.dataset.set_epoch(epoch)  # before fit opens this epoch's iterator
        self.epoch_losses: list[float] = []
        self.start = self.last_step_end = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = float(logs["step_loss"])
        self.last_step_end = time.perf_counter()
        check_finite_loss(loss, self.dataset.epoch + 1, batch + 1)
        self.epoch_losses.append(loss)
        if self.on_event:
            self.on_event(
                {
                    "event": "step",
                    "epoch": self.dataset.epoch + 1,
                    "step": batch + 1,
                    "steps": self.steps,
                    "loss": sum(self.epoch_losses) / len(self.epoch_losses),
                    "accuracy": float(logs["accuracy"]),
                }
            )

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        record = EpochRecord(
            epoch=epoch + 1,
            train_loss=float(np.mean(self.epoch_losses)),
            train_accuracy=float(logs["accuracy"]),
            val_loss=float(logs.get("val_loss", np.nan)),
            val_accuracy=float(logs.get("val_accuracy", np.nan)),
            time_s=self.last_step_end - self.start,  # training steps only, not validation
        )
        self.state["history"].append(dataclasses.asdict(record))
        self.state["step_losses"].extend(self.epoch_losses)
        save_checkpoint(self.checkpoints, epoch + 1, self.model, self.state)
        if self.on_event:
            self.on_event({"event": "epoch", **dataclasses.asdict(record)})


class ProgressBar(keras.callbacks.ProgbarLogger):
    """Keras's progress bar without ``step_loss``: the bar shows running means, and a mean
    of the last-batch values would mean nothing (``loss`` there is the epoch's running mean)."""

    @staticmethod
    def _shown(logs: dict | None) -> dict:
        return {k: v for k, v in (logs or {}).items() if not k.endswith("step_loss")}

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        super().on_train_batch_end(batch, self._shown(logs))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        super().on_epoch_end(epoch, self._shown(logs))


def save_checkpoint(folder: Path, epoch: int, model: keras.Model, state: dict[str, Any]) -> None:
    """Write ``folder/epoch-NNN.npz``: model and optimiser variables, and ``state`` as JSON."""
    arrays = {f"model.{i}": to_numpy(v) for i, v in enumerate(model.variables)}
    arrays |= {f"optimizer.{i}": to_numpy(v) for i, v in enumerate(model.optimizer.variables)}
    text = json.dumps({**state, "epoch": epoch})
    arrays["state"] = np.frombuffer(text.encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(folder / f"epoch-{epoch:03d}.npz", buffer.getvalue())


def restore_checkpoint(path: Path, model: keras.Model, spec_data: dict[str, Any]) -> dict[str, Any]:
    """Load a checkpoint of the run described by ``spec_data`` into a compiled ``model``;
    returns its state. A checkpoint of another spec raises ``UserError``."""
    with np.load(path) as arrays:
        state = json.loads(arrays["state"].tobytes())
        if state["spec"] != spec_data:
            raise UserError(
                f"the checkpoints in {path.parent} belong to a run with another spec",
                "resume with the same spec and flags, or start a new run without --resume",
            )
        model.optimizer.build(model.trainable_variables)
        for prefix, variables in (
            ("model", model.variables),
            ("optimizer", model.optimizer.variables),
        ):
            for i, variable in enumerate(variables):
                variable.assign(arrays[f"{prefix}.{i}"])
    return state


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint file in ``folder``, or None."""
    found = sorted(
        (int(m.group(1)), p)
        for p in folder.glob("epoch-*.npz")
        if (m := _CHECKPOINT.fullmatch(p.name))
    )
    return found[-1][1] if found else None


def device_scope(device: str) -> tuple[str, AbstractContextManager]:
    """``("cpu" | "gpu", scope)`` for ``device`` (auto | cpu | gpu) on the current backend.

    Every backend places work on a GPU by itself when one is visible, so a scope is needed
    only to keep a run on the CPU of a GPU machine.
    """
    if device not in ("auto", "cpu", "gpu"):
        raise UserError(f"unknown device {device!r}", "use auto, cpu or gpu")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        has_gpu = bool(tf.config.list_physical_devices("GPU"))
    elif backend == "torch":
        import torch

        has_gpu = torch.cuda.is_available()
    else:
        import jax

        has_gpu = any(d.platform == "gpu" for d in jax.devices())
    if device == "gpu" and not has_gpu:
        raise UserError(
            f"no GPU is visible to the {backend} backend", "train with --device cpu or auto"
        )
    if device != "cpu" or not has_gpu:
        return ("gpu" if has_gpu else "cpu"), contextlib.nullcontext()
    if backend == "torch":
        # Keras's torch backend turns variables created under a device scope into non-leaf
        # tensors that receive no gradients; hiding the GPU is the reliable way.
        raise UserError(
            "the torch backend cannot be kept off a visible GPU from inside a process",
            "set CUDA_VISIBLE_DEVICES= (empty) before starting, or use keras-cnn --device cpu",
        )
    return "cpu", keras.device("cpu:0")


def train(
    spec: ModelSpec,
    train_spec: TrainSpec,
    data: Data,
    out_dir: str | Path,
    init_weights: Weights | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    *,
    resume: bool = False,
    device: str = "auto",
    progress: bool = True,
) -> RunResult:
    """Train on the shared batch order, evaluate on the test set, write the run record.

    ``data`` holds NHWC images in [0, 1] and int64 labels. Writes ``out_dir/run.json``,
    ``out_dir/weights.safetensors`` (canonical layout) and a checkpoint per epoch under
    ``out_dir/checkpoints/``; ``resume=True`` continues from the newest one there.
    """
    wall_start = time.perf_counter()
    out_dir = Path(out_dir)
    checkpoints = out_dir / CHECKPOINT_DIR
    used_device, scope = device_scope(device)
    backend = keras.backend.backend()
    with scope, floatx(train_spec.dtype):
        model, state, start_epoch = _start(spec, train_spec, init_weights, checkpoints, resume)
        dataset = EpochBatches(data.x_train, data.y_train, train_spec, start_epoch)
        if on_event:
            on_event(
                {
                    "event": "start",
                    "framework": FRAMEWORK,
                    "epochs": train_spec.epochs,
                    "steps_per_epoch": len(dataset),
                    "start_epoch": start_epoch,
                }
            )
        if start_epoch < train_spec.epochs:
            _fit(
                model,
                dataset,
                data,
                train_spec,
                start_epoch,
                progress,
                callbacks=[RunRecorder(dataset, checkpoints, state, on_event)],
            )
        test_loss, _, y_pred = evaluate(model, data.x_test, data.y_test)
    save_weights(out_dir / WEIGHTS_FILE, get_weights(model), spec, train_spec)
    result = finish_result(
        framework=FRAMEWORK,
        backend=backend,
        device=used_device,
        versions=package_versions(["keras", "numpy", *_BACKEND_PACKAGES.get(backend, [])]),
        dataset=data.name,
        class_names=data.class_names,
        model_spec=spec,
        train_spec=train_spec,
        init=state["init"],
        history=[EpochRecord(**h) for h in state["history"]],
        step_losses=state["step_losses"],
        test_loss=test_loss,
        y_test=data.y_test,
        y_pred=y_pred,
        n_train=len(data.x_train),
        wall_time_s=time.perf_counter() - wall_start,
        extra={
            "optimizer": type(model.optimizer).__name__,
            "resumed_from_epoch": start_epoch,
            "step_loss": "StepLoss metric: the compiled loss of each batch's own forward pass",
        },
    )
    result.to_json(out_dir / RESULT_FILE)
    if on_event:
        on_event(
            {"event": "end", "test_loss": result.test_loss, "test_accuracy": result.test_accuracy}
        )
    return result


def _start(
    spec: ModelSpec,
    train_spec: TrainSpec,
    init_weights: Weights | None,
    checkpoints: Path,
    resume: bool,
) -> tuple[keras.Model, dict[str, Any], int]:
    """A compiled model, the recorded state and the first epoch to run (0-based)."""
    spec_data = spec_to_dict(spec, train_spec)
    model = build(spec, train_spec.dtype, seed=train_spec.seed)
    if init_weights is not None:
        set_weights(model, init_weights)
    compile_model(model, train_spec)
    found = latest_checkpoint(checkpoints) if resume else None
    if found:
        state = restore_checkpoint(found, model, spec_data)
        return model, state, state.pop("epoch")
    for stale in checkpoints.glob("epoch-*.npz"):
        stale.unlink()  # a fresh run must never resume from an older run's files
    init = "native" if init_weights is None else "shared"
    return model, {"spec": spec_data, "init": init, "history": [], "step_losses": []}, 0


def _fit(
    model: keras.Model,
    dataset: EpochBatches,
    data: Data,
    train_spec: TrainSpec,
    start_epoch: int,
    progress: bool,
    callbacks: list[keras.callbacks.Callback],
) -> None:
    """``model.fit`` over ``dataset`` from ``start_epoch``, validating after every epoch."""
    validation = (data.x_val, data.y_val) if len(data.x_val) else None
    model.fit(
        dataset,
        epochs=train_spec.epochs,
        initial_epoch=start_epoch,
        shuffle=False,  # the batch order is the shared one; Keras must not reorder it
        validation_data=validation,
        validation_batch_size=PREDICT_BATCH,
        callbacks=[*callbacks, ProgressBar()] if progress else callbacks,
        verbose=1 if progress else 0,
    )
