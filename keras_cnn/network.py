"""The network: the CNN of the spec as a Keras model, its batch normalisation, loss and metrics.

A block-form spec (a chain: conv, pool, ..., dense, logits) is a ``keras.Sequential``; a
layer list is a functional model (``Network``): the list may branch and join (``add``), and
Keras's functional API builds any graph of layers. Either is named after
``cnn_common.spec.layers``, one Keras layer per spec layer.

Keras's weight layout is the canonical one (conv kernel ``(KH, KW, C_in / groups, F)``, dense
kernel ``(in, out)``, ``Flatten`` reads NHWC maps in H, W, C order), so weights cross the
contract without transposing anything.

'same' padding: Keras places the odd padding pixel after (bottom/right) on every backend, as
TensorFlow does, which is ``Layer.pad`` of ``cnn_common.spec.layers``; ``make_network`` checks
every layer's output shape against the spec, so a placement that differed would fail loudly.

A frozen layer of the spec (``trainable: false``) is a Keras layer with ``trainable = False``:
out of ``model.trainable_variables`` (and so of the optimiser and of ``trainable``), kept in
``model.variables``, the ``.keras`` file and the checkpoints.

Shapes: N batch, H, W, C channels, KH, KW kernel, F filters, K classes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np
from keras import ops

from cnn_common.seeds import int_seed
from cnn_common.spec import BATCHNORM_FIELDS, IMAGE, Layer, ModelSpec, layers


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


@keras.saving.register_keras_serializable(package="keras_cnn")
class BatchNorm(keras.layers.Layer):
    """Batch normalisation as the spec states it (``cnn_common.spec.MOMENTUM_CONVENTIONS``,
    ``VARIANCES``), written with ``keras.ops`` so that every backend runs the same formulas.

    Per channel over the N*H*W values of a batch (n of them), in training mode:
    ``y = gamma * (x - mean) / sqrt(var_b + epsilon) + beta`` with the batch's mean and biased
    variance ``var_b``; the running statistics then move towards ``mean`` and ``var_b`` (times
    ``n / (n - 1)`` where ``variance="unbiased"``) by ``momentum`` in its convention ("torch":
    ``new = (1 - m) * old + m * batch``, "keras": ``new = m * old + (1 - m) * batch``).
    Evaluation mode normalises with the running statistics. ``keras.layers.BatchNormalization``
    is Keras's convention with the biased variance only, and computes its own way; one layer
    for every convention keeps a change of convention a change of the update alone.

    Frozen (``trainable = False``; Keras still calls the layer with ``training=True`` inside
    ``fit``), training mode does what ``frozen_batchnorm`` says
    (``cnn_common.graph.FROZEN_BATCHNORM``): "batch" as above, the batch's statistics updating
    the running ones (PyTorch's module in train mode); "inference" as in evaluation, the
    running statistics left as they are (``keras.layers.BatchNormalization``'s behaviour), so
    its gradient is evaluation mode's.

    Input shape: ``(N, H, W, C)``. Output shape: the same.
    """

    def __init__(
        self,
        momentum: float = 0.1,
        epsilon: float = 1e-5,
        momentum_convention: str = "torch",
        variance: str = "unbiased",
        frozen_batchnorm: str = "batch",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.momentum = momentum
        self.epsilon = epsilon
        self.momentum_convention = momentum_convention
        self.variance = variance
        self.frozen_batchnorm = frozen_batchnorm

    def build(self, input_shape: tuple) -> None:
        channels = (input_shape[-1],)  # C
        self.gamma = self.add_weight(shape=channels, initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=channels, initializer="zeros", name="beta")
        self.moving_mean = self.add_weight(
            shape=channels, initializer="zeros", name="moving_mean", trainable=False
        )
        self.moving_variance = self.add_weight(
            shape=channels, initializer="ones", name="moving_variance", trainable=False
        )

    def call(self, inputs, training: bool | None = None, update: bool = True):
        """Normalise ``inputs``; in training mode with the batch's statistics, which update the
        running ones unless ``update`` is False (a gradient query leaves them as they are),
        except in a frozen layer whose ``frozen_batchnorm`` is "inference"."""
        if not training or (not self.trainable and self.frozen_batchnorm == "inference"):
            return self.normalise(inputs, self.moving_mean, self.moving_variance)
        mean = ops.mean(inputs, axis=(0, 1, 2))  # (C,)
        variance = ops.mean(ops.square(ops.subtract(inputs, mean)), axis=(0, 1, 2))  # biased
        if update:
            self.update_statistics(mean, variance, inputs)
        return self.normalise(inputs, mean, variance)

    def normalise(self, inputs, mean, variance):
        """``gamma * (inputs - mean) / sqrt(variance + epsilon) + beta``, per channel."""
        deviation = ops.sqrt(ops.add(variance, self.constant(self.epsilon)))
        scaled = ops.divide(ops.subtract(inputs, mean), deviation)
        return ops.add(ops.multiply(self.gamma, scaled), self.beta)

    def update_statistics(self, mean, variance, inputs) -> None:
        """The running average step of ``momentum_convention`` towards the batch's ``mean``
        and variance (biased ``variance``, stored as ``self.variance`` says)."""
        mean, variance = ops.stop_gradient(mean), ops.stop_gradient(variance)
        if self.variance == "unbiased":
            _, h, w, _ = inputs.shape
            n = ops.cast(ops.shape(inputs)[0] * h * w, self.compute_dtype)  # N*H*W
            variance = ops.multiply(variance, ops.divide(n, ops.subtract(n, 1)))
        m, rest = self.constant(self.momentum), self.constant(1 - self.momentum)
        if self.momentum_convention == "torch":
            old_weight, new_weight = rest, m
        else:
            old_weight, new_weight = m, rest
        for stored, batch in ((self.moving_mean, mean), (self.moving_variance, variance)):
            stored.assign(
                ops.add(ops.multiply(old_weight, stored), ops.multiply(new_weight, batch))
            )

    def constant(self, value: float):
        """``value`` as a tensor of the layer's dtype (converted, not cast: a cast of a Python
        float goes through float32)."""
        return ops.convert_to_tensor(value, dtype=self.compute_dtype)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "momentum_convention": self.momentum_convention,
            "variance": self.variance,
            "frozen_batchnorm": self.frozen_batchnorm,
        }


@keras.saving.register_keras_serializable(package="keras_cnn")
class Network(keras.Model):
    """A functional model that keeps the layer list's order and what each layer reads.

    Keras orders a functional model's layers by their depth in the graph, which interleaves
    a residual block's two branches; ``layer_inputs`` (``(name, (input names, ...))`` in the
    spec's order, ``IMAGE`` for the image) keeps the spec's order and its inputs, and travels
    in the ``.keras`` file's config.
    """

    def __init__(self, *args: Any, layer_inputs: Any = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.layer_inputs = tuple((name, tuple(inputs)) for name, inputs in layer_inputs)

    def get_config(self) -> dict[str, Any]:
        pairs = [[name, list(inputs)] for name, inputs in self.layer_inputs]
        return {**super().get_config(), "layer_inputs": pairs}


def keras_layer(layer: Layer, index: int, dtype: str, seed: int) -> keras.layers.Layer:
    """The Keras layer of the spec's ``layer`` (the ``index``-th), its kernel drawn from the
    ``init`` stream of ``seed`` (a dropout's masks from its ``dropout`` stream); frozen
    (``trainable = False``, Keras's own way) where the spec freezes it."""
    made = _new_layer(layer, index, dtype, seed)
    if not layer.trainable:
        # Its variables are made non-trainable as they are created (Layer._track_variable):
        # no gradient, no update, out of model.trainable_variables; saved with the rest.
        made.trainable = False
    return made


def _new_layer(layer: Layer, index: int, dtype: str, seed: int) -> keras.layers.Layer:
    named = {"name": layer.name, "dtype": dtype}
    # Per-layer seeds, not keras.utils.set_random_seed: that one imports TensorFlow
    # whenever it is installed, even on the torch backend.
    weighted = {
        "activation": layer.activation,
        "kernel_initializer": keras.initializers.GlorotUniform(seed=int_seed(seed, "init", index)),
        **named,
    }
    if layer.kind == "conv":
        # Keras's 'same' places padding as TensorFlow does (the odd pixel last) on every
        # backend, which is Layer.pad; a 'same' layer whose pad is zero is a 'valid' one.
        padding = "valid" if layer.pad == ((0, 0), (0, 0)) else "same"
        return keras.layers.Conv2D(
            layer.output_shape[2],  # F
            layer.kernel_size,
            strides=layer.stride,
            padding=padding,
            groups=layer.groups,
            use_bias=f"{layer.name}.bias" in layer.params,
            **weighted,
        )
    if layer.kind == "batchnorm":
        return BatchNorm(**{f: getattr(layer, f) for f in BATCHNORM_FIELDS}, **named)
    if layer.kind == "activation":
        return keras.layers.Activation(layer.activation, **named)
    if layer.kind == "pool":
        return keras.layers.MaxPooling2D(layer.kernel_size, strides=layer.stride, **named)
    if layer.kind == "avgpool":
        return keras.layers.AveragePooling2D(layer.kernel_size, strides=layer.stride, **named)
    if layer.kind == "global_avgpool":
        return keras.layers.GlobalAveragePooling2D(**named)
    if layer.kind == "flatten":
        return keras.layers.Flatten(**named)
    if layer.kind in ("dense", "logits"):
        return keras.layers.Dense(layer.units, **weighted)
    if layer.kind == "add":
        return keras.layers.Add(**named)
    return keras.layers.Dropout(layer.rate, seed=int_seed(seed, "dropout", index), **named)


def make_network(spec: ModelSpec, dtype: str = "float32", *, seed: int = 0) -> keras.Model:
    """The CNN of ``spec``: a ``keras.Sequential`` of the block form, a ``Network`` of a
    layer list, its layers named after ``cnn_common.spec.layers``.

    Input shape: ``(N, H, W, C)``. Output shape: ``(N, K)`` logits (no softmax).
    Weights start from Keras's defaults (Glorot-uniform kernels, zero biases; batchnorm's
    gamma and running variance ones, beta and running mean zeros), each layer's drawn from the
    ``init`` stream of ``seed`` (dropout masks from its ``dropout`` stream).
    """
    unrolled = layers(spec)
    if not spec.layers:
        model = keras.Sequential([keras.Input(shape=spec.input_shape, dtype=dtype)], name="cnn")
        for index, layer in enumerate(unrolled):
            model.add(keras_layer(layer, index, dtype, seed))
            _check_shape(layer, model.layers[-1].output)
        return model
    tensors = {IMAGE: keras.Input(shape=spec.input_shape, dtype=dtype, name=IMAGE)}
    for index, layer in enumerate(unrolled):
        added = keras_layer(layer, index, dtype, seed)
        read = [tensors[name] for name in layer.inputs]
        tensors[layer.name] = added(read if layer.kind == "add" else read[0])
        _check_shape(layer, tensors[layer.name])
    return Network(
        tensors[IMAGE],
        tensors[unrolled[-1].name],
        name="cnn",
        layer_inputs=[(layer.name, layer.inputs) for layer in unrolled],
    )


def _check_shape(layer: Layer, output: keras.KerasTensor) -> None:
    built = tuple(output.shape[1:])
    if built != layer.output_shape:
        raise AssertionError(
            f"{layer.name}: Keras built {built}, the spec says {layer.output_shape}"
        )


def graph(model: keras.Model) -> list[tuple[keras.layers.Layer, tuple[str, ...]]]:
    """Every layer of ``model`` in the spec's order with the names of what it reads (the
    layer before it in a ``Sequential``; ``IMAGE`` for the image)."""
    if isinstance(model, Network):
        return [(model.get_layer(name), inputs) for name, inputs in model.layer_inputs]
    chain, before = [], IMAGE
    for layer in model.layers:
        chain.append((layer, (before,)))
        before = layer.name
    return chain


def call_arguments(
    layer: keras.layers.Layer, inputs: list, batch_statistics: bool
) -> tuple[tuple, dict[str, Any]]:
    """``(args, kwargs)`` that call ``layer`` on ``inputs`` (the tensors it reads) as the
    contract's queries do: dropout off, batchnorm with the batch's statistics where
    ``batch_statistics`` (without updating the running ones) or else with the running ones."""
    if isinstance(layer, keras.layers.Add):
        return (list(inputs),), {}
    if isinstance(layer, BatchNorm):
        return (inputs[0],), {"training": batch_statistics, "update": False}
    if isinstance(layer, keras.layers.Dropout):
        return (inputs[0],), {"training": False}
    return (inputs[0],), {}


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


# The Keras layers of cnn_common.spec.MAP_KINDS: conv, pool, avgpool, batchnorm, add.
MAP_LAYERS = (
    keras.layers.Conv2D,
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
    BatchNorm,
    keras.layers.Add,
)
STATE = ("moving_mean", "moving_variance")  # batchnorm's running statistics


def tensors(model: keras.Model) -> list[tuple[str, keras.Variable]]:
    """Canonical names and variables of every tensor ``cnn_common.spec.weight_shapes`` lists,
    in its order: conv1.kernel, conv1.bias, ..., bn1.gamma, bn1.beta, bn1.moving_mean,
    bn1.moving_variance, ..., logits.bias."""
    named = []
    for layer, _ in graph(model):
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            named.append((f"{layer.name}.kernel", layer.kernel))
            if layer.bias is not None:
                named.append((f"{layer.name}.bias", layer.bias))
        elif isinstance(layer, BatchNorm):
            for field in ("gamma", "beta", *STATE):
                named.append((f"{layer.name}.{field}", getattr(layer, field)))
    return named


def trainable(model: keras.Model) -> list[tuple[str, keras.Variable]]:
    """``tensors`` that are trained (``cnn_common.spec.trainable_shapes``): without the running
    statistics and without the variables of frozen layers (``trainable = False``)."""
    return [
        (name, v)
        for name, v in tensors(model)
        if v.trainable and name.rpartition(".")[2] not in STATE
    ]


def to_numpy(variable: keras.Variable) -> np.ndarray:
    """A copy of a variable's value as a NumPy array."""
    if keras.backend.backend() == "tensorflow":
        return variable.value.numpy()  # np.array(tf.Variable) is deprecated under NumPy 2
    return ops.convert_to_numpy(variable.value)


def input_shape(model: keras.Model) -> tuple[int, ...]:
    return tuple(model.input_shape[1:])


def model_dtype(model: keras.Model) -> str:
    """The dtype the layers compute in (a ``Sequential`` itself always reports floatx)."""
    return graph(model)[0][0].dtype
