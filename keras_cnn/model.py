"""The CNN as a ``keras.Sequential`` built from the spec, and the contract's model functions.

Keras's weight layout is the canonical one (conv kernel ``(KH, KW, C_in, F)``, dense kernel
``(in, out)``, ``Flatten`` reads NHWC maps in H, W, C order), so ``get_weights`` /
``set_weights`` copy tensors without transposing anything.

'same' padding: Keras places the odd padding pixel after (bottom/right) on every backend, as
TensorFlow does, which is ``Layer.pad`` of ``cnn_common.spec.layers``; ``build`` checks every
layer's output shape against the spec, so a placement that differed would fail loudly.

Optimisers follow the ``TrainSpec``: ``TorchAdam`` adds epsilon to ``sqrt(v_hat)`` (the
"torch" convention, the spec's default), Keras's own ``Adam`` adds it to ``sqrt(v)`` before
the bias correction (the "keras" convention); ``TorchSGD`` keeps PyTorch's momentum buffer
``v = mu*v + g; w -= lr*v`` where Keras's ``SGD`` keeps ``m = mu*m - lr*g; w += m`` (equal for
a constant learning rate, but rounded differently).

Shapes: N batch, H, W, C channels, KH, KW kernel, F filters, K classes.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
from keras import ops

from cnn_common.data import check_images
from cnn_common.spec import ModelSpec, TrainSpec, layers
from cnn_common.weights import Weights

PREDICT_BATCH = 1024  # images per forward pass in predict/evaluate: 10,000 fit in memory


@keras.saving.register_keras_serializable(package="keras_cnn")
class TorchAdam(keras.optimizers.Adam):
    """Adam with epsilon added to ``sqrt(v_hat)`` (Kingma & Ba, Algorithm 1; PyTorch).

    ``m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
    w -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)``. Written with ``keras.ops`` only,
    so it runs on every backend.
    """

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        step = ops.cast(self.iterations + 1, variable.dtype)
        # convert_to_tensor, not cast: casting a Python float goes through float32 first
        bias_1 = 1 - ops.power(ops.convert_to_tensor(self.beta_1, variable.dtype), step)
        bias_2 = 1 - ops.power(ops.convert_to_tensor(self.beta_2, variable.dtype), step)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        denominator = ops.add(ops.sqrt(ops.divide(v, bias_2)), self.epsilon)
        self.assign_sub(variable, ops.divide(ops.multiply(lr, ops.divide(m, bias_1)), denominator))


@keras.saving.register_keras_serializable(package="keras_cnn")
class TorchSGD(keras.optimizers.SGD):
    """SGD with PyTorch's momentum buffer: ``v = mu*v + g; w -= lr*v``."""

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        if self.momentum == 0:
            self.assign_sub(variable, ops.multiply(lr, gradient))
            return
        v = self.momentums[self._get_variable_index(variable)]
        momentum = ops.convert_to_tensor(self.momentum, variable.dtype)  # exact in float64
        self.assign(v, ops.add(ops.multiply(v, momentum), gradient))
        self.assign_sub(variable, ops.multiply(lr, v))


@keras.saving.register_keras_serializable(package="keras_cnn")
class StepLoss(keras.metrics.Metric):
    """The loss of the latest training batch (not a running mean).

    Keras logs the running mean of the loss over the epoch; the run record keeps every step's
    loss, so this metric applies the compiled loss function (``cross_entropy`` in the model's
    dtype) to the logits of the step's own forward pass, before the weights are updated, and
    keeps only that value. (Recovering it from the running mean instead would cancel
    catastrophically in float32 late in an epoch.)
    """

    def __init__(self, name: str = "step_loss", dtype: str | None = None) -> None:
        super().__init__(name=name, dtype=dtype)
        self._loss = cross_entropy(self.dtype)
        self.value = self.add_variable(
            shape=(), initializer="zeros", dtype=self.dtype, name="value"
        )

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        self.value.assign(ops.cast(self._loss(y_true, y_pred, sample_weight), self.dtype))

    def result(self):
        # A tensor, not the variable itself: jax refuses variables as outputs of a traced step.
        return ops.convert_to_tensor(self.value)


def cross_entropy(dtype: str) -> keras.losses.Loss:
    """Mean softmax cross-entropy on logits, computed in ``dtype`` (Keras losses compute in
    float32 unless told otherwise, which would make a float64 run float32 where it counts)."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=dtype)


def build(spec: ModelSpec, dtype: str = "float32", *, seed: int | None = None) -> keras.Sequential:
    """The CNN of ``spec`` as a ``keras.Sequential`` named after ``cnn_common.spec.layers``.

    Input shape: ``(N, H, W, C)``. Output shape: ``(N, K)`` logits (no softmax).
    Weights start from Keras's defaults (Glorot-uniform kernels, zero biases), drawn from
    ``seed`` (and dropout masks too) when it is given; ``set_weights`` replaces them.
    """
    model = keras.Sequential([keras.Input(shape=spec.input_shape, dtype=dtype)], name="cnn")
    for index, layer in enumerate(layers(spec)):
        # Per-layer seeds, not keras.utils.set_random_seed: that one imports TensorFlow
        # whenever it is installed, even on the torch backend.
        layer_seed = None if seed is None else seed * 1000 + index
        kernel_init = keras.initializers.GlorotUniform(seed=layer_seed)
        if layer.kind == "conv":
            # Keras's 'same' places padding as TensorFlow does (the odd pixel last) on every
            # backend, which is Layer.pad; a 'same' layer whose pad is zero is a 'valid' one.
            padding = "valid" if layer.pad == ((0, 0), (0, 0)) else "same"
            model.add(
                keras.layers.Conv2D(
                    layer.output_shape[2],  # filters F
                    layer.kernel_size,
                    strides=layer.stride,
                    padding=padding,
                    activation=layer.activation,
                    kernel_initializer=kernel_init,
                    name=layer.name,
                    dtype=dtype,
                )
            )
        elif layer.kind == "pool":
            model.add(
                keras.layers.MaxPooling2D(
                    layer.kernel_size, strides=layer.stride, name=layer.name, dtype=dtype
                )
            )
        elif layer.kind == "flatten":
            model.add(keras.layers.Flatten(name=layer.name, dtype=dtype))
        elif layer.kind in ("dense", "logits"):
            model.add(
                keras.layers.Dense(
                    layer.units,
                    activation=layer.activation,
                    kernel_initializer=kernel_init,
                    name=layer.name,
                    dtype=dtype,
                )
            )
        elif layer.kind == "dropout":
            model.add(
                keras.layers.Dropout(layer.rate, seed=layer_seed, name=layer.name, dtype=dtype)
            )
        built = tuple(model.layers[-1].output.shape[1:])
        if built != layer.output_shape:
            raise AssertionError(
                f"{layer.name}: Keras built {built}, the spec says {layer.output_shape}"
            )
    return model


@contextlib.contextmanager
def floatx(dtype: str) -> Iterator[None]:
    """Run Keras work under ``keras.config.floatx() == dtype``.

    ``fit``, ``predict`` and ``train_on_batch`` cast float arrays to floatx, and optimisers keep
    their learning rate in floatx: a float64 model would otherwise see float32 inputs.
    """
    old = keras.config.floatx()
    keras.config.set_floatx(dtype)
    try:
        yield
    finally:
        keras.config.set_floatx(old)


def make_optimizer(train_spec: TrainSpec) -> keras.optimizers.Optimizer:
    """A fresh optimiser for ``train_spec`` (see the module docstring for the conventions)."""
    if train_spec.optimizer == "sgd":
        return TorchSGD(learning_rate=train_spec.learning_rate, momentum=train_spec.momentum)
    adam = TorchAdam if train_spec.epsilon_convention == "torch" else keras.optimizers.Adam
    return adam(
        learning_rate=train_spec.learning_rate,
        beta_1=train_spec.beta_1,
        beta_2=train_spec.beta_2,
        epsilon=train_spec.epsilon,
    )


def compile_model(model: keras.Model, train_spec: TrainSpec) -> None:
    """Compile with a fresh optimiser, cross-entropy on logits, accuracy and the step loss."""
    model.compile(
        optimizer=make_optimizer(train_spec),
        loss=cross_entropy(model_dtype(model)),
        metrics=[
            keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
            StepLoss(dtype=model_dtype(model)),
        ],
    )


def _trainable(model: keras.Model) -> list[tuple[str, keras.Variable]]:
    """Canonical names and variables: conv1.kernel, conv1.bias, ..., logits.bias."""
    named = []
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            named += [(f"{layer.name}.kernel", layer.kernel), (f"{layer.name}.bias", layer.bias)]
    return named


def to_numpy(variable: keras.Variable) -> np.ndarray:
    """A copy of a variable's value as a NumPy array."""
    if keras.backend.backend() == "tensorflow":
        return variable.value.numpy()  # np.array(tf.Variable) is deprecated under NumPy 2
    return ops.convert_to_numpy(variable.value)


def _input_shape(model: keras.Model) -> tuple[int, ...]:
    return tuple(model.input_shape[1:])


def model_dtype(model: keras.Model) -> str:
    """The dtype the layers compute in (a ``Sequential`` itself always reports floatx)."""
    return model.layers[0].dtype


def predict_logits(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Raw logits. ``x: (N, H, W, C)`` floats in [0, 1] -> ``(N, K)`` in the model's dtype."""
    dtype = model_dtype(model)
    x = check_images(x, _input_shape(model)).astype(dtype, copy=False)
    with floatx(dtype):
        return np.asarray(model.predict(x, batch_size=PREDICT_BATCH, verbose=0))


def predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Class probabilities (softmax of the logits). ``x: (N, H, W, C)`` -> ``(N, K)``."""
    logits = predict_logits(model, x).astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    return (probs / probs.sum(axis=1, keepdims=True)).astype(model_dtype(model))


def evaluate(model: keras.Model, x: np.ndarray, y: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Mean softmax cross-entropy, accuracy and predicted classes ``(N,)`` int64 on ``(x, y)``."""
    logits = predict_logits(model, x).astype(np.float64)  # (N, K)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    y = np.asarray(y, dtype=np.int64)
    loss = float(-log_probs[np.arange(len(y)), y].mean())
    predictions = logits.argmax(axis=1).astype(np.int64)
    return loss, float(np.mean(predictions == y)), predictions


def feature_maps(model: keras.Model, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every conv (after its activation) and pool output, in layer order, NHWC float32.

    ``x: (N, H, W, C)`` -> ``{"conv1": (N, H1, W1, F1), "pool1": ..., ...}``; a
    ``keras.Model`` over the intermediate outputs computes them in one pass.
    """
    x = check_images(x, _input_shape(model)).astype(model_dtype(model), copy=False)
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
    return {name: to_numpy(variable) for name, variable in _trainable(model)}


def set_weights(model: keras.Model, weights: Weights) -> None:
    """Load canonical weights into ``model`` (cast to its dtype); names and shapes checked."""
    named = _trainable(model)
    expected = {name: tuple(variable.shape) for name, variable in named}
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing or extra:
        raise ValueError(f"weights do not match the model: missing {missing}, unexpected {extra}")
    for name, variable in named:
        value = np.asarray(weights[name])
        if tuple(value.shape) != expected[name]:
            raise ValueError(f"{name}: expected shape {expected[name]}, got {value.shape}")
        variable.assign(value.astype(variable.dtype))


def loss_and_grads(model: keras.Model, x: np.ndarray, y: np.ndarray) -> tuple[float, Weights]:
    """Mean softmax cross-entropy of ``(x, y)`` and its gradients in the canonical layout.

    ``x: (N, H, W, C)``, ``y: (N,)``. Dropout is off (``training=False``). TensorFlow records
    with ``GradientTape``; the torch backend differentiates with ``torch.autograd.grad``; jax
    with ``jax.value_and_grad`` over ``stateless_call``.
    """
    x = check_images(x, _input_shape(model)).astype(model_dtype(model), copy=False)
    y = np.asarray(y, dtype=np.int64)
    named = _trainable(model)
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

        trainable = model.trainable_variables
        non_trainable = [variable.value for variable in model.non_trainable_variables]

        def compute(values: list) -> object:
            logits, _ = model.stateless_call(values, non_trainable, x, training=False)
            return loss_fn(y, logits)

        loss, all_grads = jax.value_and_grad(compute)([variable.value for variable in trainable])
        position = {id(variable): i for i, variable in enumerate(trainable)}
        grads = [all_grads[position[id(variable)]] for _, variable in named]
    return float(ops.convert_to_numpy(loss)), {
        name: ops.convert_to_numpy(grad) for (name, _), grad in zip(named, grads, strict=True)
    }


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
            x = check_images(x, _input_shape(model)).astype(dtype, copy=False)
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
    return keras.saving.load_model(Path(path))
