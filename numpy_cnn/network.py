"""The network: the CNN of a ``ModelSpec`` in NumPy, forward with caches, backward in reverse.

``make_network(spec)`` walks ``cnn_common.spec.layers(spec)``, so any spec cnn_common accepts works:
strides, 'same' padding (the asymmetric TensorFlow placement is in ``Layer.pad``), convolutions
without pooling, several dense layers, dropout, relu | tanh | sigmoid | linear. The model
outputs logits; softmax lives in the loss and in ``predict``.

The model's forward pass collects one cache per layer; its backward pass walks them in reverse
and returns the gradient of every weight in the canonical layout (the layout the weights are
stored in here, so no conversion is needed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cnn_common.spec import Layer, ModelSpec
from cnn_common.spec import layers as spec_layers
from cnn_common.weights import Weights
from numpy_cnn import ops, parallel
from numpy_cnn.optim import Optimizer


@dataclass
class CNN:
    """A built model: its spec, the layer list, the weights (canonical layout) and scratch.

    ``weights`` maps ``conv1.kernel`` ... ``logits.bias`` to arrays of ``dtype``; the
    optimisers update them in place. ``workspaces`` hold each layer's reusable training
    buffers; ``replicas`` are the views of this model that ``train_step`` runs in its other
    threads.
    """

    spec: ModelSpec
    dtype: np.dtype
    layers: list[Layer]
    weights: Weights
    workspaces: dict[str, ops.Workspace] = field(default_factory=dict)
    replicas: list[CNN] = field(default_factory=list)  # per-thread views for train_step


def make_network(spec: ModelSpec, weights: Weights, dtype: str = "float32") -> CNN:
    """The network of ``spec`` holding ``weights`` (canonical layout, cast to ``dtype``)."""
    all_layers = spec_layers(spec)
    owned = {name: np.array(value, dtype=dtype) for name, value in weights.items()}
    workspaces = {layer.name: ops.Workspace() for layer in all_layers}
    return CNN(spec, np.dtype(dtype), all_layers, owned, workspaces)


# ----------------------------------------------------------------------------- forward, backward


def forward(
    model: CNN,
    x: np.ndarray,
    *,
    train: bool = False,
    rng: np.random.Generator | None = None,
    keep: dict[str, np.ndarray] | None = None,
    every_layer: bool = False,
) -> tuple[np.ndarray, list[tuple[Layer, ops.Cache]]]:
    """Logits ``(N, K)`` for images ``x (N, H, W, C)``, and the caches for ``backward``.

    ``train=True`` uses the per-layer workspaces (the backward pass must follow before the next
    training forward) and applies dropout with ``rng``; ``keep`` (a dict) receives every conv
    (after its activation) and pool output by layer name, and every layer's output with
    ``every_layer``, which also applies each activation before pooling, as the spec reads (the
    layer-by-layer trace compares these with the other frameworks').
    """
    w = model.weights
    caches: list[tuple[Layer, ops.Cache]] = []
    out = x
    deferred = ""  # the activation of a conv layer, applied after its pooling
    for index, layer in enumerate(model.layers):
        ws = model.workspaces[layer.name] if train else None
        name = layer.name
        if layer.kind == "conv":
            out, conv_cache = ops.conv2d_forward(
                out, w[f"{name}.kernel"], w[f"{name}.bias"], layer.stride, layer.pad, ws
            )
            following = model.layers[index + 1] if index + 1 < len(model.layers) else None
            if following is not None and following.kind == "pool" and not every_layer:
                # max(f(z)) = f(max(z)) for the non-decreasing relu, tanh, sigmoid and linear:
                # pooling the pre-activations and applying f to the pooled map (a quarter of
                # the values for 2x2) gives the same outputs and the same gradients.
                deferred, act_cache = layer.activation, None
                if keep is not None:
                    keep[name] = ops.activation_forward(out, layer.activation)[0]
            else:
                out, act_cache = ops.activation_forward(out, layer.activation)
            cache: ops.Cache = (conv_cache, act_cache)
        elif layer.kind == "pool":
            out, pool_cache = ops.maxpool_forward(out, layer.kernel_size, layer.stride, ws)
            act_cache = None
            if deferred:
                out, act_cache = ops.activation_forward(out, deferred)
                deferred = ""
            cache = (pool_cache, act_cache)
        elif layer.kind == "flatten":
            cache = (out.shape,)
            out = out.reshape(out.shape[0], -1)  # (N, H*W*C), H, W, C order
        elif layer.kind in ("dense", "logits"):
            out, dense_cache = ops.dense_forward(out, w[f"{name}.kernel"], w[f"{name}.bias"])
            out, act_cache = ops.activation_forward(out, layer.activation)
            cache = (dense_cache, act_cache)
        else:  # dropout
            out, cache = ops.dropout_forward(out, layer.rate, rng if train else None)
        if (
            keep is not None
            and name not in keep
            and (every_layer or layer.kind in ("conv", "pool"))
        ):
            keep[name] = out
        caches.append((layer, cache))
    return out, caches


def backward(
    model: CNN,
    dlogits: np.ndarray,
    caches: list[tuple[Layer, ops.Cache]],
    inputs: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Gradients of every weight from ``dlogits (N, K)``, walking the caches in reverse.

    ``inputs`` (a dict) receives the gradient with respect to every layer's input, by layer
    name (the image's gradient too, which training never needs).
    """
    grads: dict[str, np.ndarray] = {}
    dout = dlogits
    for index in range(len(caches) - 1, -1, -1):
        layer, cache = caches[index]
        name = layer.name
        if layer.kind == "conv":
            conv_cache, act_cache = cache
            if act_cache is not None:
                dout = ops.activation_backward(dout, act_cache)
            # The first layer's input is the image: training never needs its gradient.
            dout, dw, db = ops.conv2d_backward(
                dout, conv_cache, need_dx=index > 0 or inputs is not None, ws=model.workspaces[name]
            )
            grads[f"{name}.kernel"], grads[f"{name}.bias"] = dw, db
        elif layer.kind == "pool":
            pool_cache, act_cache = cache
            if act_cache is not None:
                dout = ops.activation_backward(dout, act_cache)
            dout = ops.maxpool_backward(dout, pool_cache, model.workspaces[name])
        elif layer.kind == "flatten":
            dout = dout.reshape(cache[0])  # (N, H, W, C)
        elif layer.kind in ("dense", "logits"):
            dense_cache, act_cache = cache
            dout = ops.activation_backward(dout, act_cache)
            dout, dw, db = ops.dense_backward(dout, dense_cache)
            grads[f"{name}.kernel"], grads[f"{name}.bias"] = dw, db
        else:  # dropout
            dout = ops.dropout_backward(dout, cache)
        if inputs is not None:
            inputs[name] = dout.copy()  # workspaces are reused by the next layer
    return {name: grads[name] for name in model.weights}


def _shard_step(
    model: CNN, x: np.ndarray, y: np.ndarray, rng: np.random.Generator, total: int
) -> tuple[float, int, Weights]:
    """Forward and backward on one shard of a batch of ``total`` images: (sum of the shard's
    losses, correct predictions, the shard's share of the batch-mean gradients)."""
    logits, caches = forward(model, x, train=True, rng=rng)
    loss, dlogits = ops.softmax_cross_entropy(logits, y)
    dlogits *= len(y) / total  # the shard's part of the mean over the whole batch
    correct = int(np.count_nonzero(logits.argmax(axis=1) == y))
    return loss * len(y), correct, backward(model, dlogits, caches)


def _replicas(model: CNN, count: int) -> list[CNN]:
    """``model`` and ``count - 1`` views of it sharing its weights (the same dict, so updates
    and ``set_weights`` reach all), each with its own workspaces: one per thread."""
    while len(model.replicas) < count - 1:
        workspaces = {layer.name: ops.Workspace() for layer in model.layers}
        model.replicas.append(CNN(model.spec, model.dtype, model.layers, model.weights, workspaces))
    return [model, *model.replicas[: count - 1]]


def train_step(
    model: CNN, optimizer: Optimizer, x: np.ndarray, y: np.ndarray, rng: np.random.Generator
) -> tuple[float, int]:
    """Forward, loss, backward and one optimiser update on one batch.

    ``x (N, H, W, C)`` in the model's dtype, ``y (N,)`` -> (mean loss, number of correct
    predictions made by the model as it was before the update). The batch is cut into one
    contiguous shard per core (``parallel.workers()``), run in parallel; each shard's dropout
    masks come from its own generator seeded from ``rng``, so the step is deterministic.
    """
    n = len(y)
    shards = min(parallel.workers(), n)
    seeds = rng.integers(0, 2**63, size=shards)
    bounds = np.linspace(0, n, shards + 1).astype(int)
    jobs = [
        (replica, x[a:b], y[a:b], np.random.default_rng(seed), n)
        for replica, a, b, seed in zip(
            _replicas(model, shards), bounds[:-1], bounds[1:], seeds, strict=True
        )
    ]
    if shards == 1:
        results = [_shard_step(*jobs[0])]
    else:
        results = list(parallel.executor().map(lambda job: _shard_step(*job), jobs))
    grads = results[0][2]
    for _, _, shard_grads in results[1:]:
        for name, g in shard_grads.items():
            grads[name] = grads[name] + g
    optimizer.step(model.weights, grads)
    return sum(r[0] for r in results) / n, sum(r[1] for r in results)
