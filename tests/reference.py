"""The float64 NumPy reference every framework is checked against, and one numeric gradient.

The spec's forward pass and its backward pass, written as directly as NumPy allows: the graph
of ``cnn_common.spec.layers`` walked in order (each layer reads ``Layer.inputs``), padding
from ``Layer.pad``, every window with ``sliding_window_view`` and one ``einsum`` per layer. It
shares no code with ``numpy_cnn`` (which uses im2col and GEMMs), so agreeing with it means
something; its own gradients are checked against ``numeric_gradient`` (``cnn_common.numeric``'s
central differences, re-exported here) of ``reference_loss`` (tests/contract/test_reference.py).

Two modes, as the contract states them (docs/design.md, issue 17): evaluation mode normalises
with the running statistics (``moving_mean``, ``moving_variance``); training mode with the
batch's mean and biased variance. Dropout is off in both. Shapes: N images, H, W, C channels,
F filters, K classes.

``reference_train_steps`` takes optimiser steps as ``train_steps`` does: Adam (both epsilon
conventions) or SGD with momentum, weight decay and the learning-rate schedule of the spec
(``cnn_common.schedule`` states the schedule's formula, checked against PyTorch's and Keras's
own schedulers in their tests).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cnn_common.numeric import numeric_gradient  # noqa: F401 - re-exported for the tests
from cnn_common.schedule import decays, learning_rate
from cnn_common.spec import IMAGE, Layer, ModelSpec, TrainSpec, layers, trainable_shapes

Arrays = dict[str, np.ndarray]

ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda z: np.maximum(z, 0.0),
    "tanh": np.tanh,
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "linear": lambda z: z,
}
# d out / d z, from the activation's output ``a``
DERIVATIVES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda a: (a > 0).astype(np.float64),
    "tanh": lambda a: 1.0 - a * a,
    "sigmoid": lambda a: a * (1.0 - a),
    "linear": np.ones_like,
}


def _windows(x: np.ndarray, k: int, stride: int) -> np.ndarray:
    """``(N, H, W, C) -> (N, Ho, Wo, C, k, k)``: every k x k window, ``stride`` apart."""
    return sliding_window_view(x, (k, k), axis=(1, 2))[:, ::stride, ::stride]


def _scatter_windows(dwin: np.ndarray, shape: tuple[int, ...], stride: int) -> np.ndarray:
    """The adjoint of ``_windows``: ``(N, Ho, Wo, C, k, k)`` summed back onto ``shape``."""
    _, ho, wo, _, k, _ = dwin.shape
    dx = np.zeros(shape)
    for i in range(k):
        for j in range(k):
            dx[
                :, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride
            ] += dwin[..., i, j]
    return dx


def _grouped(layer: Layer, x: np.ndarray) -> np.ndarray:
    """The padded windows of a conv's input by group: ``(N, Ho, Wo, G, C/G, k, k)``."""
    padded = np.pad(x, ((0, 0), layer.pad[0], layer.pad[1], (0, 0)))
    win = _windows(padded, layer.kernel_size, layer.stride)  # (N, Ho, Wo, C, k, k)
    n, ho, wo, c, k, _ = win.shape
    return win.reshape(n, ho, wo, layer.groups, c // layer.groups, k, k)


def _kernel_by_group(layer: Layer, kernel: np.ndarray) -> np.ndarray:
    """``(k, k, C/G, F) -> (k, k, C/G, G, F/G)``: output channel f belongs to group f // (F/G)."""
    k, _, cg, f = kernel.shape
    return kernel.reshape(k, k, cg, layer.groups, f // layer.groups)


def _batch_statistics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and BIASED variance over N, H, W: ``(C,)`` each."""
    mean = x.mean(axis=(0, 1, 2))
    return mean, ((x - mean) ** 2).mean(axis=(0, 1, 2))


def _batch_mode(layer: Layer, training: bool) -> bool:
    """Whether a batchnorm normalises with the batch's statistics: in training, unless it is
    frozen with ``frozen_batchnorm: inference`` (then it runs as in evaluation)."""
    return training and layer.batch_statistics


def _normaliser(layer: Layer, w: Arrays, x: np.ndarray, training: bool) -> tuple:
    """``(mean, inv_std)`` a batchnorm layer normalises ``x`` with, in the mode asked."""
    if _batch_mode(layer, training):
        mean, var = _batch_statistics(x)
    else:
        mean, var = w[f"{layer.name}.moving_mean"], w[f"{layer.name}.moving_variance"]
    return mean, 1.0 / np.sqrt(var + layer.epsilon)


def _layer_forward(layer: Layer, w: Arrays, ins: list[np.ndarray], training: bool) -> np.ndarray:
    """One layer's output from its inputs ``ins`` (one array, two for ``add``)."""
    x, name = ins[0], layer.name
    if layer.kind == "conv":
        z = np.einsum(
            "nhwgcij,ijcgf->nhwgf", _grouped(layer, x), _kernel_by_group(layer, w[f"{name}.kernel"])
        )
        z = z.reshape(*z.shape[:3], -1)  # (N, Ho, Wo, F)
        if f"{name}.bias" in layer.params:
            z = z + w[f"{name}.bias"]
        return ACTIVATIONS[layer.activation](z)
    if layer.kind == "batchnorm":
        mean, inv_std = _normaliser(layer, w, x, training)
        return w[f"{name}.gamma"] * (x - mean) * inv_std + w[f"{name}.beta"]
    if layer.kind == "activation":
        return ACTIVATIONS[layer.activation](x)
    if layer.kind == "pool":
        return _windows(x, layer.kernel_size, layer.stride).max(axis=(4, 5))
    if layer.kind == "avgpool":
        return _windows(x, layer.kernel_size, layer.stride).mean(axis=(4, 5))
    if layer.kind == "global_avgpool":
        return x.mean(axis=(1, 2))  # (N, C)
    if layer.kind == "flatten":
        return x.reshape(len(x), -1)  # H, W, C order
    if layer.kind in ("dense", "logits"):
        return ACTIVATIONS[layer.activation](x @ w[f"{name}.kernel"] + w[f"{name}.bias"])
    if layer.kind == "add":
        return ins[0] + ins[1]
    return x  # dropout: off


def _layer_backward(
    layer: Layer,
    w: Arrays,
    ins: list[np.ndarray],
    out: np.ndarray,
    dout: np.ndarray,
    training: bool,
    grads: Arrays,
) -> list[np.ndarray]:
    """The gradients of the layer's inputs (one per ``ins``) from ``dout`` (the shape of
    ``out``); its tensors' gradients go into ``grads``."""
    x, name = ins[0], layer.name
    if layer.kind in ("conv", "dense", "logits", "activation"):
        dout = dout * DERIVATIVES[layer.activation](out)  # now d loss / d z
    if layer.kind == "conv":
        win = _grouped(layer, x)  # (N, Ho, Wo, G, C/G, k, k)
        kernel = _kernel_by_group(layer, w[f"{name}.kernel"])  # (k, k, C/G, G, F/G)
        dz = dout.reshape(*dout.shape[:3], layer.groups, -1)  # (N, Ho, Wo, G, F/G)
        grads[f"{name}.kernel"] = np.einsum("nhwgcij,nhwgf->ijcgf", win, dz).reshape(
            w[f"{name}.kernel"].shape
        )
        if f"{name}.bias" in layer.params:
            grads[f"{name}.bias"] = dout.sum(axis=(0, 1, 2))
        dwin = np.einsum("nhwgf,ijcgf->nhwgcij", dz, kernel)
        dwin = dwin.reshape(*dwin.shape[:3], -1, *dwin.shape[-2:])  # (N, Ho, Wo, C, k, k)
        (top, bottom), (left, right) = layer.pad
        padded_shape = (len(x), x.shape[1] + top + bottom, x.shape[2] + left + right, x.shape[3])
        dx = _scatter_windows(dwin, padded_shape, layer.stride)
        return [dx[:, top : top + x.shape[1], left : left + x.shape[2]]]
    if layer.kind == "batchnorm":
        mean, inv_std = _normaliser(layer, w, x, training)
        xhat = (x - mean) * inv_std
        grads[f"{name}.gamma"] = (dout * xhat).sum(axis=(0, 1, 2))
        grads[f"{name}.beta"] = dout.sum(axis=(0, 1, 2))
        dxhat = dout * w[f"{name}.gamma"]
        if not _batch_mode(layer, training):  # the running statistics are constants
            return [dxhat * inv_std]
        # mean and variance depend on x too: d/dx of (x - mean(x)) / sqrt(var_b(x) + eps)
        n = x.shape[0] * x.shape[1] * x.shape[2]
        total, along = dxhat.sum(axis=(0, 1, 2)), (dxhat * xhat).sum(axis=(0, 1, 2))
        return [inv_std / n * (n * dxhat - total - xhat * along)]
    if layer.kind == "pool":
        win = _windows(x, layer.kernel_size, layer.stride)  # (N, Ho, Wo, C, k, k)
        flat = win.reshape(*win.shape[:4], -1)
        first = flat.argmax(axis=-1)  # the first maximum of each window takes the gradient
        onehot = np.arange(flat.shape[-1]) == first[..., None]
        dwin = (onehot * dout[..., None]).reshape(win.shape)
        return [_scatter_windows(dwin, x.shape, layer.stride)]
    if layer.kind == "avgpool":
        k = layer.kernel_size
        ho, wo = dout.shape[1:3]
        dwin = np.broadcast_to(dout[..., None, None] / (k * k), (*dout.shape, k, k))
        return [_scatter_windows(dwin.reshape(len(x), ho, wo, -1, k, k), x.shape, layer.stride)]
    if layer.kind == "global_avgpool":
        h, wd = x.shape[1:3]
        return [np.broadcast_to(dout[:, None, None, :] / (h * wd), x.shape).copy()]
    if layer.kind == "flatten":
        return [dout.reshape(x.shape)]
    if layer.kind in ("dense", "logits"):
        grads[f"{name}.kernel"] = x.T @ dout
        grads[f"{name}.bias"] = dout.sum(axis=0)
        return [dout @ w[f"{name}.kernel"].T]
    if layer.kind == "add":
        return [dout, dout]
    return [dout]  # activation (its derivative applied above), dropout (off)


def _as_float64(weights: dict[str, np.ndarray]) -> Arrays:
    # np.asarray keeps float64 arrays as they are, so numeric_gradient's changes are seen
    return {name: np.asarray(value, dtype=np.float64) for name, value in weights.items()}


def reference_forward(
    spec: ModelSpec, weights: dict[str, np.ndarray], x: np.ndarray, *, training: bool = False
) -> Arrays:
    """Every layer's output by name (and the image under ``IMAGE``), float64, batch first:
    ``{"input": (N, H, W, C), "conv1": (N, Ho, Wo, F), ..., "logits": (N, K)}``."""
    w = _as_float64(weights)
    outputs: Arrays = {IMAGE: np.asarray(x, dtype=np.float64)}
    for layer in layers(spec):
        ins = [outputs[src] for src in layer.inputs]
        outputs[layer.name] = _layer_forward(layer, w, ins, training)
    return outputs


def reference_logits(
    spec: ModelSpec, weights: dict[str, np.ndarray], x: np.ndarray, *, training: bool = False
) -> np.ndarray:
    """Logits ``(N, K)`` of images ``x (N, H, W, C)`` in float64 (dropout off); evaluation
    mode unless ``training``."""
    return reference_forward(spec, weights, x, training=training)[layers(spec)[-1].name]


def _cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy and its gradient ``(N, K)``."""
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    rows = np.arange(len(y))
    dlogits = np.exp(log_p)
    dlogits[rows, y] -= 1.0
    return -float(log_p[rows, y].mean()), dlogits / len(y)


def reference_loss(
    spec: ModelSpec,
    weights: dict[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    *,
    training: bool = False,
) -> float:
    """Mean softmax cross-entropy of the reference logits against labels ``y (N,)``."""
    logits = reference_logits(spec, weights, x, training=training)
    return _cross_entropy(logits, np.asarray(y))[0]


def reference_gradients(
    spec: ModelSpec,
    weights: dict[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    *,
    training: bool = True,
) -> tuple[float, Arrays, Arrays]:
    """``(loss, grads, input_grads)`` in float64: ``grads`` of every trained tensor
    (``trainable_shapes``: none of a frozen layer's), ``input_grads`` by layer name the TOTAL
    gradient of the tensor the layer reads first (summed over every layer reading it), as
    ``layer_trace``'s ``grad_input/<layer>``. Training mode (batch statistics, as
    ``loss_and_grads``) unless ``training`` is False (running statistics, as
    ``layer_trace``)."""
    w = _as_float64(weights)
    all_layers = layers(spec)
    outputs = reference_forward(spec, w, x, training=training)
    loss, dlogits = _cross_entropy(outputs[all_layers[-1].name], np.asarray(y))
    dtensors: Arrays = {all_layers[-1].name: dlogits}
    grads: Arrays = {}
    for layer in reversed(all_layers):  # every reader of a tensor comes after its writer
        ins = [outputs[src] for src in layer.inputs]
        douts = _layer_backward(
            layer, w, ins, outputs[layer.name], dtensors[layer.name], training, grads
        )
        for src, d in zip(layer.inputs, douts, strict=True):
            dtensors[src] = dtensors[src] + d if src in dtensors else d
    input_grads = {layer.name: dtensors[layer.inputs[0]] for layer in all_layers}
    trained = trainable_shapes(spec)  # a frozen layer's tensors have no gradient to report
    return loss, {name: g for name, g in grads.items() if name in trained}, input_grads


def reference_running_statistics(
    spec: ModelSpec, weights: dict[str, np.ndarray], x: np.ndarray
) -> Arrays:
    """Every batchnorm's ``moving_mean`` and ``moving_variance`` ``(C,)`` after one training
    step on images ``x`` from ``weights``: the forward of that step (training mode, the
    weights before the optimiser's update) updates them once, as the spec states it."""
    w = _as_float64(weights)
    outputs = reference_forward(spec, w, x, training=True)
    updated: Arrays = {}
    for layer in layers(spec):
        if layer.kind != "batchnorm" or not _batch_mode(layer, True):
            continue  # a frozen batchnorm in inference mode keeps its running statistics
        inp = outputs[layer.inputs[0]]  # (N, H, W, C)
        mean, var = _batch_statistics(inp)
        n = inp.shape[0] * inp.shape[1] * inp.shape[2]
        if layer.variance == "unbiased":
            var = var * n / (n - 1)
        m = layer.momentum
        keep = 1.0 - m if layer.momentum_convention == "torch" else m
        for stat, batch in (("moving_mean", mean), ("moving_variance", var)):
            old = w[f"{layer.name}.{stat}"]
            updated[f"{layer.name}.{stat}"] = keep * old + (1.0 - keep) * batch
    return updated


def sample_indices(
    shape: tuple[int, ...], count: int, rng: np.random.Generator
) -> list[tuple[int, ...]]:
    """Every index of a small tensor, or ``count`` random ones of a large one."""
    size = int(np.prod(shape))
    flat = np.arange(size) if size <= count else rng.choice(size, count, replace=False)
    return [tuple(int(i) for i in np.unravel_index(f, shape)) for f in flat]


def _update(train: TrainSpec, g: np.ndarray, state: Arrays, t: int, lr: float) -> np.ndarray:
    """The optimiser's step ``w_new = w - step`` for gradient ``g`` at update ``t`` (from 1)
    and learning rate ``lr``; ``state`` holds ``m`` and ``v`` (Adam) or ``buf`` (SGD)."""
    if train.optimizer == "sgd":
        state["buf"] = train.momentum * state["buf"] + g
        return lr * state["buf"]
    b1, b2, eps = train.beta_1, train.beta_2, train.epsilon
    state["m"] = b1 * state["m"] + (1 - b1) * g
    state["v"] = b2 * state["v"] + (1 - b2) * g * g
    if train.epsilon_convention == "torch":  # eps added to sqrt(v_hat)
        return lr * (state["m"] / (1 - b1**t)) / (np.sqrt(state["v"] / (1 - b2**t)) + eps)
    # keras: eps added to sqrt(v) before the bias correction
    return lr * np.sqrt(1 - b2**t) / (1 - b1**t) * state["m"] / (np.sqrt(state["v"]) + eps)


def reference_train_steps(
    spec: ModelSpec,
    train: TrainSpec,
    weights: dict[str, np.ndarray],
    batches: list[tuple[np.ndarray, np.ndarray]],
    steps_per_epoch: int | None = None,
) -> tuple[list[float], Arrays]:
    """One update per ``(x, y)`` batch from a fresh optimiser state, float64: the training-mode
    loss and gradients and the running statistics of that forward, then weight decay
    (``l2``: ``g + wd * w``; ``decoupled``: ``w - lr * wd * w`` first) and the optimiser's
    step at update ``s``'s learning rate in a run of ``steps_per_epoch`` updates an epoch
    (default: the batches are one epoch). The losses, and every weight after the last
    update."""
    w = {name: value.copy() for name, value in _as_float64(weights).items()}
    trainable = sorted(trainable_shapes(spec))
    decayed, wd = decays(train, trainable), train.weight_decay
    states = {name: {k: np.zeros_like(w[name]) for k in ("m", "v", "buf")} for name in trainable}
    losses = []
    for s, (x, y) in enumerate(batches):
        loss, grads, _ = reference_gradients(spec, w, x, y)
        statistics = reference_running_statistics(spec, w, x)
        lr = learning_rate(train, s, steps_per_epoch or len(batches))
        for name in trainable:
            g = grads[name]
            if name in decayed and train.weight_decay_convention == "l2":
                g = g + wd * w[name]
            if name in decayed and train.weight_decay_convention == "decoupled":
                w[name] = w[name] - lr * wd * w[name]
            w[name] = w[name] - _update(train, g, states[name], s + 1, lr)
        w.update(statistics)
        losses.append(loss)
    return losses, w
