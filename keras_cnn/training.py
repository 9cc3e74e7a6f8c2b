"""Training with ``model.fit`` on the shared batch order, a checkpoint per epoch, resume.

- ``epoch_arrays`` lays an epoch's images out in the shared batch order (``cnn_common.batches.
  epoch_batches``, with the shared augmentation): one ``fit`` call per epoch on those arrays
  with ``shuffle=False`` slices them into exactly the shared batches, through Keras's own array
  pipeline (a ``PyDataset`` serving the same batches is slower: every batch crosses from
  Python into the backend's input pipeline one at a time; docs/design.md has the figure).
- ``RecorderCallback`` (a ``keras.callbacks.Callback``) feeds the run recorder the loss of
  every step (from the ``StepLoss`` metric: Keras's own ``loss`` log is the running mean over
  the epoch) and writes a checkpoint after every epoch.
- A checkpoint, ``checkpoints/epoch-NNNN.npz``, holds every model variable (weights,
  batchnorm's running statistics and the dropout seed states, which a ``.keras`` file leaves
  out), every optimiser variable (step count, moments) and the recorder's state. The step
  count is where the learning-rate schedule stands (``keras_cnn.optim.SpecSchedule``), so a
  resumed run continues it exactly. ``resume=True`` rebuilds the model from the spec,
  restores them from the newest readable file and fits on from there. (A ``.keras`` file would
  serve too, but Keras's serialiser imports TensorFlow whenever it is installed, even on the
  torch backend.)
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from contextlib import AbstractContextManager
from pathlib import Path

import keras
import numpy as np

from cnn_common.batches import augment_batch, epoch_batches, steps_per_epoch
from cnn_common.data import Data
from cnn_common.errors import UserError
from cnn_common.files import atomic_write_npz, check_resumable, checkpoint_path
from cnn_common.gpu import SETTERS
from cnn_common.machine import thread_setting
from cnn_common.phases import Phases, StepClock
from cnn_common.recorder import RunRecorder
from cnn_common.results import RunResult, package_versions
from cnn_common.seeds import int_seed
from cnn_common.spec import ModelSpec, TrainSpec, spec_to_dict
from cnn_common.trainer import TrainCall, contract_train
from cnn_common.weights import Weights
from keras_cnn.framework import BACKEND_TABLE, framework_for_backend
from keras_cnn.model import PREDICT_BATCH, build, evaluate, get_weights, set_weights
from keras_cnn.network import floatx, to_numpy
from keras_cnn.optim import compile_model

SUFFIX = ".npz"


def epoch_arrays(
    x: np.ndarray,
    y: np.ndarray,
    train_spec: TrainSpec,
    epoch: int,
    into: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The training set of ``epoch`` (0-based) in the shared batch order, augmented:
    ``x (N, H, W, C)``, ``y (N,)`` reordered so that consecutive slices of ``batch_size`` are
    the batches of ``epoch_batches``, each shifted by ``augment_batch``.

    ``into``: the arrays an earlier epoch returned, written over (``fit`` has copied them by
    then): a fresh 170 MB array is page-faulted in anew every epoch, ten times the copy itself.
    """
    spec = train_spec
    batches = epoch_batches(len(x), spec.batch_size, spec.seed, epoch)
    order = np.concatenate(batches)
    shape, dtype = (len(order), *x.shape[1:]), np.dtype(spec.dtype)
    if into is not None and into[0].shape == shape and into[0].dtype == dtype:
        xs, ys = into
    else:
        xs, ys = np.empty(shape, dtype), np.empty(len(order), y.dtype)
    if spec.augment_shift:
        start = 0
        for step, idx in enumerate(batches):
            xs[start : start + len(idx)] = augment_batch(
                x[idx], spec.augment_shift, spec.seed, epoch, step
            )
            start += len(idx)
    elif x.dtype == dtype:
        np.take(x, order, axis=0, out=xs)
    else:
        xs[...] = x[order]
    np.take(y, order, out=ys)
    return xs, ys


class RecorderCallback(keras.callbacks.Callback):
    """Feeds ``fit``'s steps and epochs to the run recorder; a checkpoint after every epoch.

    Either order's batches are ``batch_size`` images but the last. ``begins_epochs=False``:
    the caller begins each epoch itself (before laying out its arrays, so that the epoch's
    time includes that work).
    """

    def __init__(
        self, recorder: RunRecorder, out_dir: Path, n_train: int, begins_epochs: bool = True
    ) -> None:
        super().__init__()
        self.recorder = recorder
        self.begins_epochs = begins_epochs
        self.out_dir = out_dir
        self.n_train = n_train
        self._correct = self._seen = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self.begins_epochs:
            self.recorder.begin_epoch(epoch)
        self._correct = self._seen = 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        size = self.recorder.train_spec.batch_size
        n = min(size, self.n_train - batch * size)
        self._seen += n
        # Keras logs the epoch's running accuracy; the step's correct count is its increment.
        correct = round(float(logs["accuracy"]) * self._seen)
        self.recorder.step(float(logs["step_loss"]), correct - self._correct, n)
        self._correct = correct

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        self.recorder.end_epoch(logs.get("val_loss", np.nan), logs.get("val_accuracy", np.nan))
        save_checkpoint(checkpoint_path(self.out_dir, epoch + 1, SUFFIX), self.model, self.recorder)


def save_checkpoint(path: Path, model: keras.Model, recorder: RunRecorder) -> None:
    """Write ``path``: model and optimiser variables, and the recorder's state as JSON."""
    arrays = {f"model.{i}": to_numpy(v) for i, v in enumerate(model.variables)}
    arrays |= {f"optimizer.{i}": to_numpy(v) for i, v in enumerate(model.optimizer.variables)}
    arrays["state"] = np.frombuffer(json.dumps(recorder.state()).encode(), dtype=np.uint8)
    atomic_write_npz(path, arrays)


def load_checkpoint(path: Path, model: keras.Model, recorder: RunRecorder) -> None:
    """Load a checkpoint into a compiled ``model`` and the recorder; a checkpoint of another
    spec raises ``UserError``."""
    with np.load(path) as arrays:
        state = json.loads(arrays["state"].tobytes())
        current = spec_to_dict(recorder.model_spec, recorder.train_spec)
        check_resumable(state["spec"], current, path.parent)
        model.optimizer.build(model.trainable_variables)
        for prefix, variables in (
            ("model", model.variables),
            ("optimizer", model.optimizer.variables),
        ):
            for i, variable in enumerate(variables):
                variable.assign(arrays[f"{prefix}.{i}"])
    recorder.restore(state)


def seed_native_shuffle(seed: int) -> None:
    """Seed what ``fit(x, y, shuffle=True)`` shuffles with on this backend: NumPy's global
    generator (torch, jax) or TensorFlow's global seed (``tf.random.shuffle``)."""
    np.random.seed(int_seed(seed, "native_order"))
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.random.set_seed(int_seed(seed, "native_order"))


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


@contract_train(lambda: framework_for_backend(keras.backend.backend()))
def train(run: TrainCall) -> RunResult:
    """Train on the shared batch order, evaluate on the test set, write the run record.

    ``data`` holds NHWC images in [0, 1] and int64 labels. Writes ``out_dir/run.json``,
    ``out_dir/weights.safetensors`` (canonical layout) and a checkpoint per epoch under
    ``out_dir/checkpoints/``; ``resume=True`` continues from the newest readable one there.
    The framework name in the record follows the backend (keras, keras-torch or keras-jax)
    unless ``name`` gives another.
    ``native={"order"}`` lets ``fit(x, y, shuffle=True)`` shuffle the arrays itself (with the
    shared augmentation off: Keras's array pipeline has no per-batch hook for it);
    ``"padding"`` changes nothing (Keras's 'same' is the spec's placement); ``"optimizer"``
    trains with ``keras.optimizers.Adam`` itself (``keras_cnn.optim.KerasAdam`` says how they
    differ).
    """
    spec, train_spec, data = run.spec, run.train_spec, run.data
    backend = keras.backend.backend()
    native_order = "order" in run.native
    if native_order and train_spec.augment_shift:
        raise UserError(
            "keras's native batch order (fit on arrays with shuffle=True) cannot apply the "
            "shared augmentation",
            "set augment_shift=0 for a native-order run, or keep the shared order",
        )
    used_device, scope = device_scope(run.device)
    if used_device == "gpu":
        SETTERS[backend](train_spec)  # the spec's TF32 and determinism, in the backend's words
    recorder = run.new_recorder()
    with scope, floatx(train_spec.dtype):
        model = build(spec, train_spec.dtype, seed=train_spec.seed)
        run.initialise(model, set_weights)
        # The schedule counts the updates of the shared batch order's epochs (fit's own
        # shuffled order has as many); a resumed run restores the optimiser's update count.
        per_epoch = steps_per_epoch(len(data.x_train), train_spec.batch_size)
        native_adam = "optimizer" in run.native
        compile_model(model, train_spec, native=native_adam, steps_per_epoch=per_epoch)
        run.resume_checkpoint(SUFFIX, lambda path: load_checkpoint(path, model, recorder))
        recorder.start(get_weights(model))
        if recorder.epochs_done < train_spec.epochs:
            validation = (data.x_val, data.y_val) if len(data.x_val) else None
            callback = RecorderCallback(recorder, run.out_dir, len(data.x_train), native_order)
            fit = {
                "batch_size": train_spec.batch_size,
                "validation_data": validation,
                "validation_batch_size": PREDICT_BATCH,
                "callbacks": [callback],
                "verbose": 0,  # the recorder prints the same progress as every trainer
            }
            if native_order:  # Keras's own: fit shuffles the arrays every epoch
                seed_native_shuffle(train_spec.seed)
                model.fit(
                    data.x_train,
                    data.y_train,
                    shuffle=True,
                    epochs=train_spec.epochs,
                    initial_epoch=recorder.epochs_done,
                    **fit,
                )
            else:  # the shared order: one fit per epoch on arrays laid out in it
                laid_out = None  # one pair of arrays, written over every epoch
                for epoch in range(recorder.epochs_done, train_spec.epochs):
                    recorder.begin_epoch(epoch)  # the epoch's time includes its layout
                    x, y = epoch_arrays(data.x_train, data.y_train, train_spec, epoch, laid_out)
                    model.fit(x, y, shuffle=False, epochs=epoch + 1, initial_epoch=epoch, **fit)
                    laid_out = (x, y)
        test_loss, _, predictions = evaluate(model, data.x_test, data.y_test)
    return recorder.finish(
        backend=backend,
        device=used_device,
        versions=package_versions(["keras", "numpy", *BACKEND_TABLE[backend].versioned]),
        test_loss=test_loss,
        predictions=predictions,
        weights=get_weights(model),
        threads=backend_threads(backend),
        extra={"optimizer": type(model.optimizer).__name__},
    )


class PhaseClock(keras.callbacks.Callback):
    """Times ``fit``'s steps: ``fused`` from the start of a batch to its end (the train
    function: batch fetch, forward, backward and update in one call), ``data`` from the end of
    one batch to the start of the next (the loop between calls). Stops ``fit`` after ``steps``."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps
        self.clock = StepClock()
        self._ended: float | None = None

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self.clock.start()
        if self._ended is not None:
            self.clock.add("data", time.perf_counter() - self._ended)
            self.clock.skip()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.clock.mark("fused")
        self.clock.end_step()
        self._ended = time.perf_counter()
        if len(self.clock.phases.times["fused"]) >= self.steps:
            self.model.stop_training = True


def phase_times(
    spec: ModelSpec, train_spec: TrainSpec, data: Data, init_weights: Weights, steps: int
) -> Phases:
    """``steps`` steps of ``fit`` from ``init_weights`` on the CPU (the first epoch's shared
    batches, from the start again when there are fewer), timed by phase (``cnn_common.phases``).
    Keras runs the batch fetch, forward pass, backward pass and update as one train function
    (compiled with ``tf.function``, or the backend's own), so only that function as a whole
    (``fused``) and the loop between its calls (``data``) can be timed without changing what
    runs."""
    used_device, scope = device_scope("cpu")
    with scope, floatx(train_spec.dtype):
        model = build(spec, train_spec.dtype, seed=train_spec.seed)
        set_weights(model, init_weights)
        x, y = epoch_arrays(data.x_train, data.y_train, train_spec, 0)
        per_epoch = steps_per_epoch(len(x), train_spec.batch_size)
        epochs = -(-steps // per_epoch)
        # the run's schedule, over every step fit takes here
        compile_model(model, train_spec, steps_per_epoch=per_epoch, updates=epochs * per_epoch)
        clock = PhaseClock(steps)
        model.fit(
            x,
            y,
            batch_size=train_spec.batch_size,
            shuffle=False,
            epochs=epochs,
            callbacks=[clock],
            verbose=0,
        )
    phases = clock.clock.phases
    phases.note = (
        "Keras runs the batch fetch, forward pass, backward pass and update as one train "
        f"function on the {keras.backend.backend()} backend (fused); timing inside it would "
        "change what runs"
    )
    return phases


def backend_threads(backend: str) -> int:
    """The CPU threads the backend computes with: torch says; TensorFlow and XLA use the
    thread count the process was given (``OMP_NUM_THREADS``, ``TF_NUM_INTRAOP_THREADS``)."""
    if backend == "torch":
        import torch

        return torch.get_num_threads()
    value = os.environ.get("TF_NUM_INTRAOP_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else thread_setting()
