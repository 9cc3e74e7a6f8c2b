"""Gradients through the layer graph, one layer at a time, on each backend: what
``loss_and_grads`` and ``layer_trace`` compute (``keras_cnn.model``).

The layers are called one after the other as ``network.graph`` lists them, each reading the
tensors it names, so that every tensor in between is one the backend can differentiate:
TensorFlow records them on a ``GradientTape``, torch asks ``autograd.grad`` for them, jax
differentiates a pure function that adds a zero to each (``stateless_call``); the gradient
with respect to that zero is the tensor's. A tensor read by several layers (a residual
block's input) gets the sum of their contributions: the total gradient.

The layers run as the contract's queries run them (``network.call_arguments``): dropout off,
batchnorm with the batch's statistics (training mode, running statistics left as they are)
or with the running ones (evaluation mode). Only the trained tensors (``network.trainable``)
get gradients: a frozen layer's are constants, which the gradient flows through.

Shapes: N batch, H, W, C channels, K classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from keras import ops

from cnn_common.spec import IMAGE
from keras_cnn.network import call_arguments, cross_entropy, graph, model_dtype, trainable


@dataclass
class Differentiated:
    """What one differentiated forward pass gives, as NumPy arrays.

    ``outputs``: every layer's output by name, in the spec's order; ``tensor_grads``: the
    total gradient of the loss with respect to the image (``IMAGE``) and every layer's output
    (only when asked for); ``weight_grads``: the trainable tensors' gradients by canonical name.
    """

    loss: float
    outputs: dict[str, np.ndarray]
    tensor_grads: dict[str, np.ndarray]
    weight_grads: dict[str, np.ndarray]


def differentiate(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_statistics: bool,
    tensors_too: bool,
) -> Differentiated:
    """The mean cross-entropy of ``(x, y)`` and its gradients with respect to the trainable
    tensors and, with ``tensors_too``, to the image and every layer's output.

    ``x: (N, H, W, C)`` in the model's dtype, ``y: (N,)`` int64. ``batch_statistics``:
    batchnorm in training mode (else evaluation mode).
    """
    loss_fn = cross_entropy(model_dtype(model))
    backend = keras.backend.backend()
    if backend == "jax":
        loss, outputs, tensor_grads, weight_grads = _jax(
            model, x, y, loss_fn, batch_statistics, tensors_too
        )
    else:
        loss, outputs, tensor_grads, weight_grads = _recorded(
            model, x, y, loss_fn, batch_statistics, tensors_too, backend
        )
    outputs.pop(IMAGE)
    return Differentiated(
        float(ops.convert_to_numpy(loss)),
        {name: ops.convert_to_numpy(value) for name, value in outputs.items()},
        tensor_grads,
        weight_grads,
    )


def _walk(model: keras.Model, image: Any, batch_statistics: bool) -> dict[str, Any]:
    """Every layer called on what it reads: ``{IMAGE: image, name: output, ...}``. A layer
    that hands back its input itself (dropout switched off, a linear activation) gets a copy,
    so that each name is a tensor of its own for the gradient."""
    tensors = {IMAGE: image}
    for layer, inputs in graph(model):
        read = [tensors[name] for name in inputs]
        args, kwargs = call_arguments(layer, read, batch_statistics)
        out = layer(*args, **kwargs)
        if any(out is tensor for tensor in read):
            out = ops.copy(out)
        tensors[layer.name] = out
    return tensors


def _numpy_grads(names: list[str], grads: list, like: list) -> dict[str, np.ndarray]:
    """Gradients as NumPy arrays; a tensor the loss does not depend on gets zeros."""
    return {
        name: np.zeros(tuple(ref.shape), dtype=keras.backend.standardize_dtype(ref.dtype))
        if grad is None
        else ops.convert_to_numpy(grad)
        for name, grad, ref in zip(names, grads, like, strict=True)
    }


def _recorded(model, x, y, loss_fn, batch_statistics, tensors_too, backend):  # noqa: ANN001, ANN202 - backend tensors
    """TensorFlow (``GradientTape``) and torch (``autograd.grad``)."""
    named = trainable(model)
    variables = [variable.value for _, variable in named]
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            image = tf.convert_to_tensor(x)
            if tensors_too:
                tape.watch(image)
            outputs = _walk(model, image, batch_statistics)
            loss = loss_fn(y, list(outputs.values())[-1])
        targets = list(outputs.values()) if tensors_too else []
        grads = tape.gradient(loss, [*targets, *variables])
    else:
        import torch

        image = ops.convert_to_tensor(x)
        if tensors_too:
            image.requires_grad_()
        outputs = _walk(model, image, batch_statistics)
        loss = loss_fn(ops.convert_to_tensor(y), list(outputs.values())[-1])
        targets = list(outputs.values()) if tensors_too else []
        grads = torch.autograd.grad(loss, [*targets, *variables], allow_unused=True)
    n = len(targets)
    tensor_grads = _numpy_grads(list(outputs)[:n], grads[:n], targets)
    weight_grads = _numpy_grads([name for name, _ in named], grads[n:], variables)
    return loss, outputs, tensor_grads, weight_grads


def _jax(model, x, y, loss_fn, batch_statistics, tensors_too):  # noqa: ANN001, ANN202 - jax arrays
    """jax: ``value_and_grad`` of a pure function of the trainable values and of a zero added
    to each tensor."""
    import jax
    import jax.numpy as jnp

    walked = graph(model)
    values = [[v.value for v in layer.trainable_variables] for layer, _ in walked]
    frozen = [[v.value for v in layer.non_trainable_variables] for layer, _ in walked]

    def run(values: list, zeros: dict | None) -> tuple:
        tensors = {IMAGE: jnp.asarray(x)}
        if zeros is not None:
            tensors[IMAGE] = tensors[IMAGE] + zeros[IMAGE]
        for (layer, inputs), vals, fixed in zip(walked, values, frozen, strict=True):
            args, kwargs = call_arguments(layer, [tensors[n] for n in inputs], batch_statistics)
            out = layer.stateless_call(vals, fixed, *args, **kwargs)[0]
            tensors[layer.name] = out if zeros is None else out + zeros[layer.name]
        return loss_fn(y, tensors[walked[-1][0].name]), tensors

    if tensors_too:
        _, probe = run(values, None)
        zeros = {name: jnp.zeros_like(value) for name, value in probe.items()}
        (loss, outputs), (grad_values, grad_zeros) = jax.value_and_grad(
            run, argnums=(0, 1), has_aux=True
        )(values, zeros)
        tensor_grads = {name: ops.convert_to_numpy(g) for name, g in grad_zeros.items()}
    else:
        (loss, outputs), grad_values = jax.value_and_grad(run, has_aux=True)(values, None)
        tensor_grads = {}
    # jax hands dicts back sorted by key: the spec's order again
    outputs = {name: outputs[name] for name in (IMAGE, *(layer.name for layer, _ in walked))}
    by_id = {
        id(v): g
        for (layer, _), gs in zip(walked, grad_values, strict=True)
        for v, g in zip(layer.trainable_variables, gs, strict=True)
    }
    weight_grads = {name: ops.convert_to_numpy(by_id[id(v)]) for name, v in trainable(model)}
    return loss, outputs, tensor_grads, weight_grads
