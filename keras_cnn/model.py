"""The contract (``docs/design.md``) for the Keras CNN: build, predict, weights, gradients, files.

The model is a ``keras.Sequential`` or, for a layer list, a functional ``Network``
(``keras_cnn.network``). Keras's weight layout is the canonical one, so weights are copied
without transposing anything; batchnorm's running statistics travel with them. Everything runs
on the backend Keras was imported with (``KERAS_BACKEND``: tensorflow, torch or jax).

Modes: ``predict_logits``, ``predict``, ``evaluate``, ``feature_maps`` and ``layer_trace`` run
in evaluation mode (running statistics, dropout off); ``loss_and_grads`` normalises with the
batch's statistics (dropout off, running statistics unchanged); ``train_steps`` and the
``fit`` loop train (batch statistics, running statistics updated every step, dropout on).
A frozen layer (the spec's ``trainable: false``) is a Keras layer with ``trainable = False``:
its tensors get no gradient and no update but are saved and loaded with the rest; a frozen
batchnorm in training follows its ``frozen_batchnorm`` (``keras_cnn.network.BatchNorm``).

Shapes: N batch, H, W, C channels, KH, KW kernel, F filters, K classes.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from pathlib import Path

import keras
import numpy as np

from cnn_common.data import check_images
from cnn_common.errors import DataError
from cnn_common.files import make_shareable
from cnn_common.metrics import readouts
from cnn_common.spec import ModelSpec, TrainSpec
from cnn_common.weights import Weights, check_weight_shapes
from keras_cnn.gradients import differentiate
from keras_cnn.network import (
    MAP_LAYERS,
    floatx,
    graph,
    input_shape,
    make_network,
    model_dtype,
    tensors,
    to_numpy,
)
from keras_cnn.optim import compile_model

PREDICT_BATCH = 1024  # images per forward pass in predict/evaluate: 10,000 fit in memory
# At most this many images go through one direct call of the model: ``predict`` sets up its
# batched loop on every call, a cost an interactive page drawing a digit would pay on every
# stroke (docs/design.md, the explorer).
DIRECT_BATCH = 64
# The feature-map extractor of each model, made once: a model over the intermediate outputs
# shares the model's layers, so it follows set_weights and training.
_EXTRACTORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _evaluate_model(model: keras.Model, x: np.ndarray) -> np.ndarray | list[np.ndarray]:
    """``model`` on ``x`` in evaluation mode, under its dtype: one direct call for a few
    images, ``predict``'s batched loop for more. Its output or list of outputs, as NumPy."""
    with floatx(model_dtype(model)):
        if len(x) > DIRECT_BATCH:
            return model.predict(x, batch_size=PREDICT_BATCH, verbose=0)
        out = model(x, training=False)
    if isinstance(out, (list, tuple)):
        return [keras.ops.convert_to_numpy(part) for part in out]
    return keras.ops.convert_to_numpy(out)


def build(spec: ModelSpec, dtype: str = "float32", *, seed: int = 0) -> keras.Model:
    """The CNN of ``spec`` with Keras's default initialisers (Glorot-uniform kernels, zero
    biases; batchnorm's ones and zeros), drawn from the ``init`` stream of ``seed``."""
    return make_network(spec, dtype, seed=seed)


def predict_logits(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Raw logits. ``x: (N, H, W, C)`` floats in [0, 1] -> ``(N, K)`` in the model's dtype."""
    x = check_images(x, input_shape(model)).astype(model_dtype(model), copy=False)
    return np.asarray(_evaluate_model(model, x))


predict, evaluate = readouts(predict_logits)


def feature_maps(model: keras.Model, x: np.ndarray) -> dict[str, np.ndarray]:
    """The outputs ``cnn_common.spec.feature_map_layers`` names (every conv after its
    activation, pool, avgpool, batchnorm and add), in the spec's order, NHWC float32, in
    evaluation mode.

    ``x: (N, H, W, C)`` -> ``{"conv1": (N, H1, W1, F1), "pool1": ..., ...}``; a
    ``keras.Model`` over the intermediate outputs (made once per model) computes them in one
    pass.
    """
    x = check_images(x, input_shape(model)).astype(model_dtype(model), copy=False)
    spatial = [layer for layer, _ in graph(model) if isinstance(layer, MAP_LAYERS)]
    if not spatial:  # a spec without convolutions
        return {}
    extractor = _EXTRACTORS.get(model)
    if extractor is None:
        outputs = [layer.output for layer in spatial]
        extractor = _EXTRACTORS[model] = keras.Model(inputs=model.inputs, outputs=outputs)
    outputs = _evaluate_model(extractor, x)
    if len(spatial) == 1:
        outputs = [outputs]
    return {
        layer.name: np.asarray(out, dtype=np.float32)
        for layer, out in zip(spatial, outputs, strict=True)
    }


def get_weights(model: keras.Model) -> Weights:
    """Canonical weights ``{name: array}``, batchnorm's running statistics included (Keras's
    layout is the canonical one: no copies are transposed)."""
    return {name: to_numpy(variable) for name, variable in tensors(model)}


def set_weights(model: keras.Model, weights: Weights) -> None:
    """Load canonical weights into ``model`` (cast to its dtype); a mismatch of names or
    shapes raises ``WeightsError`` (a ``ValueError``) naming the tensor."""
    named = tensors(model)
    check_weight_shapes({name: tuple(variable.shape) for name, variable in named}, weights)
    for name, variable in named:
        variable.assign(np.asarray(weights[name]).astype(variable.dtype))


def loss_and_grads(model: keras.Model, x: np.ndarray, y: np.ndarray) -> tuple[float, Weights]:
    """Mean softmax cross-entropy of ``(x, y)`` and its gradients in the canonical layout, for
    the trained tensors (``cnn_common.spec.trainable_shapes``: none of a frozen layer's).

    ``x: (N, H, W, C)``, ``y: (N,)``. Training-mode normalisation (batchnorm with the batch's
    statistics; a frozen one whose ``frozen_batchnorm`` is "inference" with its running ones),
    dropout off; the running statistics are left as they are (a query).
    TensorFlow records with ``GradientTape``, torch differentiates with ``torch.autograd.grad``,
    jax with ``jax.value_and_grad`` over ``stateless_call`` (``keras_cnn.gradients``).
    """
    dtype = model_dtype(model)
    x = check_images(x, input_shape(model)).astype(dtype, copy=False)
    y = np.asarray(y, dtype=np.int64)
    with floatx(dtype):
        done = differentiate(model, x, y, batch_statistics=True, tensors_too=False)
    return done.loss, done.weight_grads


def layer_trace(model: keras.Model, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Every layer's output (``forward/<layer>``), the gradient of the mean loss with respect
    to the tensor every layer reads first (``grad_input/<layer>``: the total gradient of that
    tensor, summed over every layer that reads it) and to every trained tensor
    (``grad/<tensor>``), and the loss (``loss``), in evaluation mode (batchnorm with its
    running statistics, dropout off); Keras's layout is the canonical one.

    The layers are called one after the other (``keras_cnn.gradients``) so that each tensor in
    between is one the backend can differentiate.
    """
    dtype = model_dtype(model)
    x = check_images(x, input_shape(model)).astype(dtype, copy=False)
    y = np.asarray(y, dtype=np.int64)
    with floatx(dtype):
        done = differentiate(model, x, y, batch_statistics=False, tensors_too=True)
    trace = {"loss": np.asarray(done.loss, dtype=np.float64)}
    for name, value in done.outputs.items():
        trace[f"forward/{name}"] = value
    for layer, inputs in graph(model):
        trace[f"grad_input/{layer.name}"] = done.tensor_grads[inputs[0]]
    for name, value in done.weight_grads.items():
        trace[f"grad/{name}"] = value
    return trace


def train_steps(
    model: keras.Model,
    train_spec: TrainSpec,
    batches: list[tuple[np.ndarray, np.ndarray]],
    steps_per_epoch: int | None = None,
) -> list[float]:
    """One optimiser step per ``(x, y)`` batch from a fresh optimiser; returns each step's loss.

    ``x: (N, H, W, C)``, ``y: (N,)``. Training mode: batchnorm normalises with the batch's
    statistics and updates its running ones every step, dropout is on. The batches are the
    first updates of a run of ``steps_per_epoch`` updates an epoch (default: they are one
    epoch): update ``s`` takes ``cnn_common.schedule.learning_rate(train_spec, s,
    steps_per_epoch)``, with the spec's weight decay. Updates ``model`` in place (recompiles
    it).
    """
    dtype = model_dtype(model)
    losses = []
    with floatx(dtype):
        per_epoch = steps_per_epoch or len(batches)
        compile_model(model, train_spec, steps_per_epoch=per_epoch, updates=len(batches))
        for x, y in batches:
            x = check_images(x, input_shape(model)).astype(dtype, copy=False)
            logs = model.train_on_batch(x, np.asarray(y, dtype=np.int64), return_dict=True)
            losses.append(float(logs["step_loss"]))
    return losses


def save(model: keras.Model, path: str | Path) -> None:
    """Write ``model`` (and its optimiser state, if compiled) as a ``.keras`` file, atomically:
    to a temporary name beside ``path``, then renamed over it."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"the path must end in .keras. Received: path={str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".keras", dir=path.parent)
    os.close(fd)
    try:
        model.save(tmp)  # into mkstemp's file, which is 0600
        make_shareable(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: str | Path) -> keras.Model:
    """Read a model written by ``save`` (compiled again when it was saved compiled)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"model file {path} does not exist", "check the path")
    try:
        return keras.saving.load_model(path)
    except Exception as exc:  # noqa: BLE001 - any failure to read means a bad file
        raise DataError(
            f"{path} is not a readable .keras model ({type(exc).__name__}: {exc})",
            "write it with keras_cnn.save (or `cnn-compare convert`)",
        ) from None
