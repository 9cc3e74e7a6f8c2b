"""The CNN of a ``ModelSpec`` in NumPy: build, forward with caches, backward in reverse.

``build(spec)`` walks ``cnn_common.spec.layers(spec)``, so any spec cnn_common accepts works:
strides, 'same' padding (the asymmetric TensorFlow placement is in ``Layer.pad``), convolutions
without pooling, several dense layers, dropout, relu | tanh | sigmoid | linear. The model
outputs logits; softmax lives in the loss and in ``predict``.

The model's forward pass collects one cache per layer; its backward pass walks them in reverse
and returns the gradient of every weight in the canonical layout (the layout the weights are
stored in here, so no conversion is needed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnn_common.data import check_images
from cnn_common.spec import Layer, ModelSpec, TrainSpec, layers
from cnn_common.weights import Weights, check_weights, init_weights, load_weights, save_weights
from numpy_cnn import ops, parallel
from numpy_cnn.optim import Optimizer

EVAL_BATCH = 1000  # images per forward pass in evaluate/predict: bounded memory for any N


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


def build(spec: ModelSpec, dtype: str = "float32") -> CNN:
    """A model for ``spec`` with numpy_cnn's initial weights.

    Those are the textbook Glorot-uniform kernels and zero biases, drawn by
    ``cnn_common.weights.init_weights(spec, seed=0)``; ``set_weights`` replaces them.
    """
    all_layers = layers(spec)
    weights = init_weights(spec, seed=0, dtype=dtype)
    workspaces = {layer.name: ops.Workspace() for layer in all_layers}
    return CNN(spec, np.dtype(dtype), all_layers, weights, workspaces)


# ----------------------------------------------------------------------------- forward, backward


def forward(
    model: CNN,
    x: np.ndarray,
    *,
    train: bool = False,
    rng: np.random.Generator | None = None,
    keep: dict[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, list[tuple[Layer, ops.Cache]]]:
    """Logits ``(N, K)`` for images ``x (N, H, W, C)``, and the caches for ``backward``.

    ``train=True`` uses the per-layer workspaces (the backward pass must follow before the next
    training forward) and applies dropout with ``rng``; ``keep`` (a dict) receives every conv
    (after its activation) and pool output by layer name.
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
            if following is not None and following.kind == "pool":
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
        if keep is not None and layer.kind in ("conv", "pool") and name not in keep:
            keep[name] = out
        caches.append((layer, cache))
    return out, caches


def backward(
    model: CNN, dlogits: np.ndarray, caches: list[tuple[Layer, ops.Cache]]
) -> dict[str, np.ndarray]:
    """Gradients of every weight from ``dlogits (N, K)``, walking the caches in reverse."""
    grads: dict[str, np.ndarray] = {}
    dout = dlogits
    for index in range(len(caches) - 1, -1, -1):
        layer, cache = caches[index]
        name = layer.name
        if layer.kind == "conv":
            conv_cache, act_cache = cache
            if act_cache is not None:
                dout = ops.activation_backward(dout, act_cache)
            # The first layer's input is the image: its gradient is never needed.
            dout, dw, db = ops.conv2d_backward(
                dout, conv_cache, need_dx=index > 0, ws=model.workspaces[name]
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
    return {name: grads[name] for name in model.weights}


def _batched_logits(model: CNN, x: np.ndarray) -> np.ndarray:
    x = check_images(x, model.spec.input_shape).astype(model.dtype, copy=False)
    parts = [forward(model, x[i : i + EVAL_BATCH])[0] for i in range(0, len(x), EVAL_BATCH)]
    if not parts:
        return np.zeros((0, model.spec.num_classes), dtype=model.dtype)
    return np.concatenate(parts)


# ----------------------------------------------------------------------------- the contract


def evaluate(model: CNN, x: np.ndarray, y: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Mean softmax cross-entropy, accuracy and int64 predictions ``(N,)`` on ``x (N, H, W, C)``.

    Batched internally (``EVAL_BATCH`` images at a time), so 10,000 images fit in memory.
    """
    logits = _batched_logits(model, x)  # (N, K)
    y = np.asarray(y, dtype=np.int64)
    if len(y) == 0:
        return float("nan"), float("nan"), np.zeros(0, dtype=np.int64)
    loss = -float(ops.log_softmax(logits)[np.arange(len(y)), y].astype(np.float64).mean())
    predictions = logits.argmax(axis=1).astype(np.int64)
    return loss, float(np.mean(predictions == y)), predictions


def predict(model: CNN, x: np.ndarray) -> np.ndarray:
    """Class probabilities ``(N, K)`` (softmax of the logits) for images ``x (N, H, W, C)``.

    A wrong shape or a non-float dtype raises ``ImageError`` with the expected shape.
    """
    return ops.softmax(_batched_logits(model, x))


def predict_logits(model: CNN, x: np.ndarray) -> np.ndarray:
    """The raw logits ``(N, K)`` for images ``x (N, H, W, C)`` (validated like ``predict``)."""
    return _batched_logits(model, x)


def feature_maps(model: CNN, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every conv (after its activation) and pool output for ``x (N, H, W, C)``, by layer name
    in layer order, NHWC float32: ``{"conv1": (N, 24, 24, 16), "pool1": ..., ...}``."""
    x = check_images(x, model.spec.input_shape).astype(model.dtype, copy=False)
    keep: dict[str, np.ndarray] = {}
    forward(model, x, keep=keep)
    return {name: value.astype(np.float32) for name, value in keep.items()}


def get_weights(model: CNN) -> Weights:
    """Copies of the weights in the canonical layout, in layer order."""
    return {name: value.copy() for name, value in model.weights.items()}


def set_weights(model: CNN, weights: Weights) -> None:
    """Replace the weights (canonical layout; cast to the model's dtype). Shapes are checked."""
    check_weights(model.spec, weights)
    for name in model.weights:
        model.weights[name] = np.array(weights[name], dtype=model.dtype)


def loss_and_grads(model: CNN, x: np.ndarray, y: np.ndarray) -> tuple[float, Weights]:
    """Mean softmax cross-entropy over the batch and its gradient for every weight
    (canonical layout), deterministic: dropout is off."""
    x = check_images(x, model.spec.input_shape).astype(model.dtype, copy=False)
    logits, caches = forward(model, x)
    loss, dlogits = ops.softmax_cross_entropy(logits, np.asarray(y, dtype=np.int64))
    return loss, backward(model, dlogits, caches)


def train_steps(
    model: CNN, train_spec: TrainSpec, batches: list[tuple[np.ndarray, np.ndarray]]
) -> list[float]:
    """One optimiser step per ``(x, y)`` batch from a fresh optimiser state; returns the losses.

    The weights are updated in place. Dropout masks, if any, are drawn from a generator
    seeded by ``train_spec.seed``.
    """
    optimizer = Optimizer(train_spec, model.weights)
    rng = np.random.default_rng([train_spec.seed, 0xD809])
    losses = []
    for x, y in batches:
        loss, _ = train_step(model, optimizer, np.asarray(x, dtype=model.dtype), y, rng)
        losses.append(loss)
    return losses


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


def save(model: CNN, path: str | Path) -> None:
    """Write the weights in the canonical safetensors file (with the spec), atomically."""
    save_weights(path, model.weights, model.spec)


def load(path: str | Path) -> CNN:
    """Rebuild a model from a file written by ``save`` (or any canonical weight file), in the
    dtype the weights were stored in."""
    weights, spec, _ = load_weights(path)
    model = build(spec, weights["logits.kernel"].dtype.name)
    set_weights(model, weights)
    return model
