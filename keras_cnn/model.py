"""The contract (``docs/design.md``) for the Keras CNN: build, predict, weights, gradients, files.

The model is a ``keras.Sequential`` (``keras_cnn.network``). Keras's weight layout is the
canonical one, so weights are copied without transposing anything. Everything runs on the
backend Keras was imported with (``KERAS_BACKEND``: tensorflow, torch or jax).

Shapes: N batch, H, W, C channels, KH, KW kernel, F filters, K classes.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import keras
import numpy as np
from keras import ops

from cnn_common.data import check_images
from cnn_common.errors import DataError
from cnn_common.metrics import readouts
from cnn_common.spec import ModelSpec, TrainSpec
from cnn_common.weights import Weights, check_weight_shapes
from keras_cnn.network import (
    cross_entropy,
    floatx,
    input_shape,
    make_network,
    model_dtype,
    to_numpy,
    trainable,
)
from keras_cnn.optim import compile_model

PREDICT_BATCH = 1024  # images per forward pass in predict/evaluate: 10,000 fit in memory


def build(spec: ModelSpec, dtype: str = "float32", *, seed: int = 0) -> keras.Sequential:
    """The CNN of ``spec`` with Keras's default initialisers (Glorot-uniform kernels, zero
    biases), drawn from the ``init`` stream of ``seed``."""
    return make_network(spec, dtype, seed=seed)


def predict_logits(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Raw logits. ``x: (N, H, W, C)`` floats in [0, 1] -> ``(N, K)`` in the model's dtype."""
    dtype = model_dtype(model)
    x = check_images(x, input_shape(model)).astype(dtype, copy=False)
    with floatx(dtype):
        return np.asarray(model.predict(x, batch_size=PREDICT_BATCH, verbose=0))


predict, evaluate = readouts(predict_logits)


def feature_maps(model: keras.Model, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every conv (after its activation) and pool output, in layer order, NHWC float32.

    ``x: (N, H, W, C)`` -> ``{"conv1": (N, H1, W1, F1), "pool1": ..., ...}``; a
    ``keras.Model`` over the intermediate outputs computes them in one pass.
    """
    x = check_images(x, input_shape(model)).astype(model_dtype(model), copy=False)
    spatial = [
        layer
        for layer in model.layers
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.MaxPooling2D))
    ]
    if not spatial:  # a spec without convolutions
        return {}
    extractor = keras.Model(inputs=model.inputs, outputs=[layer.output for layer in spatial])
    outputs = extractor.predict(x, batch_size=PREDICT_BATCH, verbose=0)
    if len(spatial) == 1:
        outputs = [outputs]
    return {
        layer.name: np.asarray(out, dtype=np.float32)
        for layer, out in zip(spatial, outputs, strict=True)
    }


def get_weights(model: keras.Model) -> Weights:
    """Canonical weights ``{name: array}`` (Keras's layout is the canonical one: no copies
    are transposed)."""
    return {name: to_numpy(variable) for name, variable in trainable(model)}


def set_weights(model: keras.Model, weights: Weights) -> None:
    """Load canonical weights into ``model`` (cast to its dtype); a mismatch of names or
    shapes raises ``WeightsError`` (a ``ValueError``) naming the tensor."""
    named = trainable(model)
    check_weight_shapes({name: tuple(variable.shape) for name, variable in named}, weights)
    for name, variable in named:
        variable.assign(np.asarray(weights[name]).astype(variable.dtype))


def loss_and_grads(model: keras.Model, x: np.ndarray, y: np.ndarray) -> tuple[float, Weights]:
    """Mean softmax cross-entropy of ``(x, y)`` and its gradients in the canonical layout.

    ``x: (N, H, W, C)``, ``y: (N,)``. Dropout is off (``training=False``). TensorFlow records
    with ``GradientTape``; the torch backend differentiates with ``torch.autograd.grad``; jax
    with ``jax.value_and_grad`` over ``stateless_call``.
    """
    x = check_images(x, input_shape(model)).astype(model_dtype(model), copy=False)
    y = np.asarray(y, dtype=np.int64)
    named = trainable(model)
    loss_fn = cross_entropy(model_dtype(model))
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=False))
        grads = tape.gradient(loss, [variable.value for _, variable in named])
    elif backend == "torch":
        import torch

        loss = loss_fn(ops.convert_to_tensor(y), model(ops.convert_to_tensor(x), training=False))
        grads = torch.autograd.grad(loss, [variable.value for _, variable in named])
    else:  # jax: differentiate a pure function of the trainable values
        import jax

        variables = model.trainable_variables
        non_trainable = [variable.value for variable in model.non_trainable_variables]

        def compute(values: list) -> object:
            logits, _ = model.stateless_call(values, non_trainable, x, training=False)
            return loss_fn(y, logits)

        loss, all_grads = jax.value_and_grad(compute)([variable.value for variable in variables])
        position = {id(variable): i for i, variable in enumerate(variables)}
        grads = [all_grads[position[id(variable)]] for _, variable in named]
    return float(ops.convert_to_numpy(loss)), {
        name: ops.convert_to_numpy(grad) for (name, _), grad in zip(named, grads, strict=True)
    }


def layer_trace(model: keras.Model, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Every layer's output (``forward/<layer>``), the gradient of the mean loss with respect
    to every layer's input (``grad_input/<layer>``) and to every weight (``grad/<tensor>``),
    and the loss (``loss``), dropout off; Keras's layout is the canonical one.

    The layers are called one after the other so that each one's input is a tensor the
    backend can differentiate: TensorFlow watches them on a ``GradientTape``, torch asks
    ``autograd.grad`` for them, jax differentiates a pure function of them (``stateless_call``).
    """
    dtype = model_dtype(model)
    x = check_images(x, input_shape(model)).astype(dtype, copy=False)
    y = np.asarray(y, dtype=np.int64)
    named = trainable(model)
    loss_fn = cross_entropy(dtype)
    names = [layer.name for layer in model.layers]
    backend = keras.backend.backend()
    with floatx(dtype):
        if backend == "tensorflow":
            import tensorflow as tf

            with tf.GradientTape() as tape:
                out = tf.convert_to_tensor(x)
                inputs, outputs = [], []
                for layer in model.layers:
                    tape.watch(out)
                    inputs.append(out)
                    out = layer(out, training=False)
                    outputs.append(out)
                loss = loss_fn(y, out)
            grads = tape.gradient(loss, [*inputs, *(v.value for _, v in named)])
        elif backend == "torch":
            import torch

            out = ops.convert_to_tensor(x).requires_grad_()
            inputs, outputs = [], []
            for layer in model.layers:
                inputs.append(out)
                out = layer(out, training=False)
                outputs.append(out)
            loss = loss_fn(ops.convert_to_tensor(y), out)
            grads = torch.autograd.grad(loss, [*inputs, *(v.value for _, v in named)])
        else:
            loss, inputs, outputs, grads = _jax_trace(model, x, y, loss_fn, named)
    n = len(model.layers)
    trace = {"loss": np.asarray(float(ops.convert_to_numpy(loss)), dtype=np.float64)}
    for name, value in zip(names, outputs, strict=True):
        trace[f"forward/{name}"] = ops.convert_to_numpy(value)
    for name, value in zip(names, grads[:n], strict=True):
        trace[f"grad_input/{name}"] = ops.convert_to_numpy(value)
    for (name, _), value in zip(named, grads[n:], strict=True):
        trace[f"grad/{name}"] = ops.convert_to_numpy(value)
    return trace


def _jax_trace(model, x, y, loss_fn, named):  # noqa: ANN001, ANN202 - jax arrays throughout
    """``layer_trace`` on the jax backend: each layer's input gets a zero added, and the
    gradient with respect to that zero is the gradient with respect to the input."""
    import jax
    import jax.numpy as jnp

    layers = model.layers
    values = [[v.value for v in layer.trainable_variables] for layer in layers]
    frozen = [[v.value for v in layer.non_trainable_variables] for layer in layers]

    def call(layer, vals, fixed, inputs):  # noqa: ANN001, ANN202
        # stateless_call hands keywords to call() as they are: only dropout takes training.
        extra = {"training": False} if layer._call_has_training_arg else {}  # noqa: SLF001
        return layer.stateless_call(vals, fixed, inputs, **extra)[0]

    def run(values: list, zeros: list) -> tuple:
        out, inputs, outputs = jnp.asarray(x), [], []
        for layer, vals, fixed, zero in zip(layers, values, frozen, zeros, strict=True):
            out = out + zero
            inputs.append(out)
            out = call(layer, vals, fixed, out)
            outputs.append(out)
        return loss_fn(y, out), (inputs, outputs)

    shapes = [tuple(x.shape)]
    probe = jnp.asarray(x)
    for layer, vals, fixed in zip(layers, values, frozen, strict=True):
        probe = call(layer, vals, fixed, probe)
        shapes.append(tuple(probe.shape))
    zeros = [jnp.zeros(shape, dtype=probe.dtype) for shape in shapes[:-1]]
    (loss, (inputs, outputs)), (grad_values, grad_zeros) = jax.value_and_grad(
        run, argnums=(0, 1), has_aux=True
    )(values, zeros)
    by_id = {
        id(v): g
        for layer, gs in zip(layers, grad_values, strict=True)
        for v, g in zip(layer.trainable_variables, gs, strict=True)
    }
    return loss, inputs, outputs, [*grad_zeros, *(by_id[id(v)] for _, v in named)]


def train_steps(
    model: keras.Model, train_spec: TrainSpec, batches: list[tuple[np.ndarray, np.ndarray]]
) -> list[float]:
    """One optimiser step per ``(x, y)`` batch from a fresh optimiser; returns each step's loss.

    ``x: (N, H, W, C)``, ``y: (N,)``. Updates ``model`` in place (recompiles it).
    """
    dtype = model_dtype(model)
    losses = []
    with floatx(dtype):
        compile_model(model, train_spec)
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
        model.save(tmp)
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
