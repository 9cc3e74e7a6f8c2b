"""The network: the CNN of a ``ModelSpec`` in NumPy, forward with caches, backward in reverse.

``make_network(spec)`` walks ``cnn_common.spec.layers(spec)``, so any spec cnn_common accepts works:
strides, 'same' padding (the asymmetric TensorFlow placement is in ``Layer.pad``), convolutions
without pooling, several dense layers, dropout, relu | tanh | sigmoid | linear. The model
outputs logits; softmax lives in the loss and in ``predict``.

The model's forward pass collects one cache per layer, a named type per layer kind
(``ConvLayerCache``, ``PoolLayerCache``, ``FlattenCache``, ``DenseLayerCache``, dropout's
``ops.DropoutCache``) holding its operations' own caches; its backward pass walks them in
reverse and returns the gradient of every weight in the canonical layout (the layout the
weights are stored in here, so no conversion is needed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

import numpy as np

from cnn_common.phases import StepClock
from cnn_common.spec import Layer, ModelSpec
from cnn_common.spec import layers as spec_layers
from cnn_common.weights import Weights
from numpy_cnn import fused, ops, parallel, pooling
from numpy_cnn.optim import Optimizer

T = TypeVar("T")


@dataclass
class CNN:
    """A built model: its spec, the layer list, the weights (canonical layout) and scratch.

    ``weights`` maps ``conv1.kernel`` ... ``logits.bias`` to arrays of ``dtype``; the
    optimisers update them in place. ``workspaces`` hold each layer's reusable training
    buffers; ``replicas`` are the views of this model that ``across_threads`` runs in its
    other threads (training and evaluation alike).
    """

    spec: ModelSpec
    dtype: np.dtype
    layers: list[Layer]
    weights: Weights
    workspaces: dict[str, ops.Workspace] = field(default_factory=dict)
    replicas: list[CNN] = field(default_factory=list)  # per-thread views: across_threads


def make_network(spec: ModelSpec, weights: Weights, dtype: str = "float32") -> CNN:
    """The network of ``spec`` holding ``weights`` (canonical layout, cast to ``dtype``)."""
    all_layers = spec_layers(spec)
    owned = {name: np.array(value, dtype=dtype) for name, value in weights.items()}
    workspaces = {layer.name: ops.Workspace() for layer in all_layers}
    return CNN(spec, np.dtype(dtype), all_layers, owned, workspaces)


# ----------------------------------------------------------------------------- forward, backward


class ConvLayerCache(NamedTuple):
    """A conv layer's caches. ``conv`` is a ``fused.ConvPoolCache`` where the convolution also
    did the pooling of the layer after it; ``activation`` is None where the activation was
    deferred to after the pooling (the pool layer's cache holds it then)."""

    conv: ops.ConvCache | fused.ConvPoolCache
    activation: ops.ActivationCache | None


class PoolLayerCache(NamedTuple):
    """A pool layer's caches: ``pool`` is None where the convolution before did the pooling;
    ``activation`` is the conv layer's activation, applied after the pooling, or None."""

    pool: pooling.PoolCache | None
    activation: ops.ActivationCache | None


class FlattenCache(NamedTuple):
    """What the flatten layer's backward needs: the map's shape to fold the gradient back."""

    x_shape: tuple[int, ...]  # (N, H, W, C)


class DenseLayerCache(NamedTuple):
    """A dense (or logits) layer's caches: the product, then its activation."""

    dense: ops.DenseCache
    activation: ops.ActivationCache


LayerCache = ConvLayerCache | PoolLayerCache | FlattenCache | DenseLayerCache | ops.DropoutCache


def forward(
    model: CNN,
    x: np.ndarray,
    *,
    train: bool = False,
    rng: np.random.Generator | None = None,
    keep: dict[str, np.ndarray] | None = None,
    every_layer: bool = False,
    scratch: bool = False,
) -> tuple[np.ndarray, list[tuple[Layer, LayerCache]]]:
    """Logits ``(N, K)`` for images ``x (N, H, W, C)``, and the caches for ``backward``.

    ``train=True`` uses the per-layer workspaces (the backward pass must follow before the next
    training forward) and applies dropout with ``rng``; ``keep`` (a dict) receives every conv
    (after its activation) and pool output by layer name, and every layer's output with
    ``every_layer``, which also applies each activation before pooling, as the spec reads (the
    layer-by-layer trace compares these with the other frameworks'). ``scratch=True`` uses the
    workspaces without training (inference): the logits and kept maps live in them until the
    next forward of this model, so the caller copies what it keeps. Without ``keep``, a
    convolution followed by pooling windows that tile its output runs as one
    ``numpy_cnn.fused.conv_pool_forward``.
    """
    w = model.weights
    caches: list[tuple[Layer, LayerCache]] = []
    out = x
    deferred = ""  # the activation of a conv layer, applied after its pooling
    pooled_here = False  # the last conv layer pooled its output itself
    cache: LayerCache
    conv_cache: ops.ConvCache | fused.ConvPoolCache
    for index, layer in enumerate(model.layers):
        ws = model.workspaces[layer.name] if train or scratch else None
        name = layer.name
        if layer.kind == "conv":
            kernel, bias = w[f"{name}.kernel"], w[f"{name}.bias"]
            following = model.layers[index + 1] if index + 1 < len(model.layers) else None
            pooled_next = following is not None and following.kind == "pool" and not every_layer
            if pooled_next and keep is None and following.stride == following.kernel_size:
                # The convolution and the pooling that tiles its output in one operation (see
                # numpy_cnn.fused); the pool layer then only applies the activation.
                out, conv_cache = fused.conv_pool_forward(
                    out, kernel, bias, layer.stride, layer.pad, following.kernel_size, ws
                )
                pooled_here = True
            else:
                out, conv_cache = ops.conv2d_forward(out, kernel, bias, layer.stride, layer.pad, ws)
                pooled_here = False
            if pooled_next:
                # max(f(z)) = f(max(z)) for the non-decreasing relu, tanh, sigmoid and linear:
                # pooling the pre-activations and applying f to the pooled map (a quarter of
                # the values for 2x2) gives the same outputs and the same gradients.
                deferred, act_cache = layer.activation, None
                if keep is not None:
                    keep[name] = ops.activation_forward(out, layer.activation)[0]
            else:
                out, act_cache = ops.activation_forward(out, layer.activation, ws)
            cache = ConvLayerCache(conv_cache, act_cache)
        elif layer.kind == "pool":
            if pooled_here:  # the convolution before has pooled already
                pool_cache = None
                pooled_here = False
            else:
                out, pool_cache = pooling.maxpool_forward(out, layer.kernel_size, layer.stride, ws)
            act_cache = None
            if deferred:
                out, act_cache = ops.activation_forward(out, deferred, ws)
                deferred = ""
            cache = PoolLayerCache(pool_cache, act_cache)
        elif layer.kind == "flatten":
            cache = FlattenCache(out.shape)
            out = out.reshape(out.shape[0], -1)  # (N, H*W*C), H, W, C order
        elif layer.kind in ("dense", "logits"):
            out, dense_cache = ops.dense_forward(out, w[f"{name}.kernel"], w[f"{name}.bias"])
            out, act_cache = ops.activation_forward(out, layer.activation, ws)
            cache = DenseLayerCache(dense_cache, act_cache)
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
    caches: list[tuple[Layer, LayerCache]],
    inputs: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Gradients of every weight from ``dlogits (N, K)``, walking the caches in reverse.

    ``inputs`` (a dict) receives the gradient with respect to every layer's input, by layer
    name (the image's gradient too, which training never needs), except a pooling layer's
    when the convolution before it did the pooling (that gradient is never formed).
    """
    grads: dict[str, np.ndarray] = {}
    dout = dlogits
    for index in range(len(caches) - 1, -1, -1):
        layer, cache = caches[index]
        name = layer.name
        ws = model.workspaces[name]
        if isinstance(cache, ConvLayerCache):
            if cache.activation is not None:
                dout = ops.activation_backward(dout, cache.activation, ws)
            # The first layer's input is the image: training never needs its gradient.
            need_dx = index > 0 or inputs is not None
            if isinstance(cache.conv, fused.ConvPoolCache):
                dout, dw, db = fused.conv_pool_backward(dout, cache.conv, need_dx, ws)
            else:
                dout, dw, db = ops.conv2d_backward(dout, cache.conv, need_dx, ws)
            grads[f"{name}.kernel"], grads[f"{name}.bias"] = dw, db
        elif isinstance(cache, PoolLayerCache):
            if cache.activation is not None:
                dout = ops.activation_backward(dout, cache.activation, ws)
            if cache.pool is None:  # pooled by the convolution before: its backward routes it
                continue
            dout = pooling.maxpool_backward(dout, cache.pool, ws)
        elif isinstance(cache, FlattenCache):
            dout = dout.reshape(cache.x_shape)  # (N, H, W, C)
        elif isinstance(cache, DenseLayerCache):
            dout = ops.activation_backward(dout, cache.activation, ws)
            dout, dw, db = ops.dense_backward(dout, cache.dense)
            grads[f"{name}.kernel"], grads[f"{name}.bias"] = dw, db
        else:  # dropout
            dout = ops.dropout_backward(dout, cache)
        if inputs is not None:
            inputs[name] = dout.copy()  # workspaces are reused by the next layer
    return {name: grads[name] for name in model.weights}


PIECE = 32  # images per forward/backward pass: a piece's buffers stay in the core's caches


def _pieces_step(
    model: CNN, x: np.ndarray, y: np.ndarray, seeds: np.ndarray, total: int
) -> tuple[float, int, Weights, list[float]]:
    """Forward and backward over ``x (n, H, W, C)`` in pieces of ``PIECE`` images, one after
    another: (sum of the losses, correct predictions, the pieces' share of the batch-mean
    gradients, added in piece order, and the seconds spent in forward and in backward).
    Piece ``i`` draws its dropout masks from ``seeds[i]``."""
    loss_sum, correct, grads = 0.0, 0, None
    dropout = any(layer.kind == "dropout" for layer in model.layers)
    seconds = [0.0, 0.0]  # in forward + loss, in backward
    for seed, start in zip(seeds, range(0, len(y), PIECE), strict=True):
        began = time.perf_counter()
        xs, ys = x[start : start + PIECE], y[start : start + PIECE]
        rng = np.random.default_rng(seed) if dropout else None  # only dropout draws
        logits, caches = forward(model, xs, train=True, rng=rng)
        loss, dlogits = ops.softmax_cross_entropy(logits, ys)
        dlogits *= len(ys) / total  # the piece's part of the mean over the whole batch
        loss_sum += loss * len(ys)
        correct += int(np.count_nonzero(logits.argmax(axis=1) == ys))
        between = time.perf_counter()
        piece_grads = backward(model, dlogits, caches)
        seconds[0] += between - began
        seconds[1] += time.perf_counter() - between
        if grads is None:
            grads = {name: g.copy() for name, g in piece_grads.items()}  # g may be scratch
        else:
            for name, g in piece_grads.items():
                grads[name] += g
    assert grads is not None
    return loss_sum, correct, grads, seconds


def replicas(model: CNN, count: int) -> list[CNN]:
    """``model`` and ``count - 1`` views of it sharing its weights (the same dict, so updates
    and ``set_weights`` reach all), each with its own workspaces: one per thread."""
    while len(model.replicas) < count - 1:
        workspaces = {layer.name: ops.Workspace() for layer in model.layers}
        model.replicas.append(CNN(model.spec, model.dtype, model.layers, model.weights, workspaces))
    return [model, *model.replicas[: count - 1]]


def across_threads(model: CNN, count: int, work: Callable[[CNN, int, int], T]) -> list[T]:
    """``work(replica, a, b)`` for ``count`` items cut into one contiguous run ``[a, b)`` per
    thread of ``numpy_cnn.parallel`` (at most one thread per item, at least one), each thread
    with its own replica of ``model``; the results in run order, whichever thread finishes
    first. One thread runs in the caller's."""
    threads = max(1, min(parallel.workers(), count))
    cuts = np.linspace(0, count, threads + 1).astype(int)  # items per thread
    jobs = list(zip(replicas(model, threads), cuts[:-1], cuts[1:], strict=True))
    if threads == 1:
        return [work(*jobs[0])]
    return list(parallel.executor().map(lambda job: work(*job), jobs))


def train_step(
    model: CNN,
    optimizer: Optimizer,
    x: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    clock: StepClock | None = None,
) -> tuple[float, int]:
    """Forward, loss, backward and one optimiser update on one batch.

    ``x (N, H, W, C)`` in the model's dtype, ``y (N,)`` -> (mean loss, number of correct
    predictions made by the model as it was before the update). The batch is cut into pieces of
    ``PIECE`` images (smaller working sets run faster per image, and two cores contend less for
    memory), and the pieces into one contiguous run per core (``parallel.workers()``), run in
    parallel; each piece's dropout masks come from its own generator seeded from ``rng``, and
    the gradients are added in a fixed order, so the step is deterministic.

    ``clock`` (``cnn_common.phases``) receives the step's forward, backward and optimiser time:
    forward and backward alternate piece by piece on every core, so the wall time of the
    parallel part is split between them in the proportion of the cores' time in each.
    """
    n = len(y)
    pieces = -(-n // PIECE)
    seeds = rng.integers(0, 2**63, size=pieces)

    def run(replica: CNN, a: int, b: int) -> tuple[float, int, Weights, list[float]]:
        return _pieces_step(
            replica, x[a * PIECE : b * PIECE], y[a * PIECE : b * PIECE], seeds[a:b], n
        )

    began = time.perf_counter()
    results = across_threads(model, pieces, run)
    if clock is not None:
        wall = time.perf_counter() - began
        forward_s, backward_s = (sum(r[3][i] for r in results) for i in (0, 1))
        share = forward_s / max(forward_s + backward_s, 1e-12)
        clock.add("forward", wall * share)
        clock.add("backward", wall * (1 - share))
        clock.skip()
    grads = results[0][2]
    for _, _, thread_grads, _ in results[1:]:
        for name, g in thread_grads.items():
            grads[name] += g
    optimizer.step(model.weights, grads)
    if clock is not None:
        clock.mark("optimizer")
    return sum(r[0] for r in results) / n, sum(r[1] for r in results)
