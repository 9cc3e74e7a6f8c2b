"""The network: the CNN as a ``keras.Sequential`` built from the spec, its loss and metrics.

Keras's weight layout is the canonical one (conv kernel ``(KH, KW, C_in, F)``, dense kernel
``(in, out)``, ``Flatten`` reads NHWC maps in H, W, C order), so weights cross the contract
without transposing anything.

'same' padding: Keras places the odd padding pixel after (bottom/right) on every backend, as
TensorFlow does, which is ``Layer.pad`` of ``cnn_common.spec.layers``; ``make_network`` checks
every layer's output shape against the spec, so a placement that differed would fail loudly.

Shapes: N batch, H, W, C channels, KH, KW kernel, F filters, K classes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras
import numpy as np
from keras import ops

from cnn_common.seeds import int_seed
from cnn_common.spec import ModelSpec, layers


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


def make_network(spec: ModelSpec, dtype: str = "float32", *, seed: int = 0) -> keras.Sequential:
    """The CNN of ``spec`` as a ``keras.Sequential`` named after ``cnn_common.spec.layers``.

    Input shape: ``(N, H, W, C)``. Output shape: ``(N, K)`` logits (no softmax).
    Weights start from Keras's defaults (Glorot-uniform kernels, zero biases), each layer's
    drawn from the ``init`` stream of ``seed`` (dropout masks from its ``dropout`` stream).
    """
    model = keras.Sequential([keras.Input(shape=spec.input_shape, dtype=dtype)], name="cnn")
    for index, layer in enumerate(layers(spec)):
        named = {"name": layer.name, "dtype": dtype}
        # Per-layer seeds, not keras.utils.set_random_seed: that one imports TensorFlow
        # whenever it is installed, even on the torch backend.
        weighted = {
            "activation": layer.activation,
            "kernel_initializer": keras.initializers.GlorotUniform(
                seed=int_seed(seed, "init", index)
            ),
            **named,
        }
        if layer.kind == "conv":
            # Keras's 'same' places padding as TensorFlow does (the odd pixel last) on every
            # backend, which is Layer.pad; a 'same' layer whose pad is zero is a 'valid' one.
            padding = "valid" if layer.pad == ((0, 0), (0, 0)) else "same"
            filters = layer.output_shape[2]  # F
            added = keras.layers.Conv2D(
                filters, layer.kernel_size, strides=layer.stride, padding=padding, **weighted
            )
        elif layer.kind == "pool":
            added = keras.layers.MaxPooling2D(layer.kernel_size, strides=layer.stride, **named)
        elif layer.kind == "flatten":
            added = keras.layers.Flatten(**named)
        elif layer.kind in ("dense", "logits"):
            added = keras.layers.Dense(layer.units, **weighted)
        else:  # dropout
            added = keras.layers.Dropout(layer.rate, seed=int_seed(seed, "dropout", index), **named)
        model.add(added)
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


def trainable(model: keras.Model) -> list[tuple[str, keras.Variable]]:
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


def input_shape(model: keras.Model) -> tuple[int, ...]:
    return tuple(model.input_shape[1:])


def model_dtype(model: keras.Model) -> str:
    """The dtype the layers compute in (a ``Sequential`` itself always reports floatx)."""
    return model.layers[0].dtype
