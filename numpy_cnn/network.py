"""The network: the CNN of a ``ModelSpec`` in NumPy, forward with caches, backward in reverse.

``make_network(spec)`` walks ``cnn_common.spec.layers(spec)``, so any spec cnn_common accepts works:
strides, 'same' padding (the asymmetric TensorFlow placement is in ``Layer.pad``), convolutions
without pooling or without bias, grouped (depthwise) convolutions, batchnorm, activations as
layers of their own, max-, average and global average pooling, several dense layers, dropout,
relu | tanh | sigmoid | linear, and ``add`` joining two earlier outputs (a residual
connection). The model outputs logits; softmax lives in the loss and in ``predict``.

The layers form a graph (``Layer.inputs``): the forward pass keeps an output by name where a
layer other than the next one reads it, and the backward pass sums the gradient contributions
of every layer that reads a tensor before passing the total on. Batchnorm normalises with the
batch's statistics in training mode (``forward(batch_stats=True)``, which ``train=True``
implies) and with the running ones otherwise; ``update_running`` moves the running
statistics once per training step.

The model's forward pass collects one cache per layer, a named type per layer kind
(``ConvLayerCache``, ``PoolLayerCache``, ``FlattenCache``, ``DenseLayerCache``, ``AddCache``,
and the operations' own: ``norm.BatchNormCache``, ``ops.ActivationCache``,
``pooling.AvgPoolCache``, ``pooling.GlobalAvgPoolCache``, ``ops.DropoutCache``); its backward
pass walks them in reverse and returns the gradient of every trainable tensor in the canonical
layout (the layout the weights are stored in here, so no conversion is needed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from cnn_common.spec import IMAGE, MAP_KINDS, Layer, ModelSpec
from cnn_common.spec import layers as spec_layers
from cnn_common.weights import Weights
from numpy_cnn import fused, grouped, norm, ops, pooling


@dataclass
class CNN:
    """A built model: its spec, the layer list, the weights (canonical layout) and scratch.

    ``weights`` maps every tensor of ``cnn_common.spec.weight_shapes`` (``conv1.kernel`` ...
    ``logits.bias``, batchnorm's running statistics included) to arrays of ``dtype``; the
    optimisers update the trainable ones in place, ``update_running`` the statistics.
    ``workspaces`` hold each layer's reusable training buffers (and the image's, under
    ``IMAGE``); ``replicas`` are the views of this model that ``across_threads`` runs in its
    other threads (training and evaluation alike). ``kept``: the outputs a layer other than
    the next one reads (the forward pass holds them by name); ``trainable``: the tensors with
    a gradient.
    """

    spec: ModelSpec
    dtype: np.dtype
    layers: list[Layer]
    weights: Weights
    workspaces: dict[str, ops.Workspace] = field(default_factory=dict)
    replicas: list[CNN] = field(default_factory=list)  # per-thread views: across_threads
    kept: frozenset[str] = field(init=False)
    trainable: list[str] = field(init=False)

    def __post_init__(self) -> None:
        kept, before = set(), IMAGE
        for layer in self.layers:
            kept.update(name for k, name in enumerate(layer.inputs) if k or name != before)
            before = layer.name
        self.kept = frozenset(kept)
        # a frozen layer's tensors (trainable: false) are weights, never trained
        self.trainable = [name for layer in self.layers if layer.trainable for name in layer.params]

    @property
    def batchnorm(self) -> bool:
        """Whether any layer normalises with its batch's statistics in training."""
        return any(layer.batch_statistics for layer in self.layers)

    def trainable_weights(self) -> Weights:
        """The trainable tensors (the same arrays as ``weights``), in layer order."""
        return {name: self.weights[name] for name in self.trainable}


def new_workspaces(all_layers: list[Layer]) -> dict[str, ops.Workspace]:
    """A fresh ``Workspace`` for every layer and for the image (``IMAGE``)."""
    return {name: ops.Workspace() for name in (IMAGE, *(layer.name for layer in all_layers))}


def make_network(spec: ModelSpec, weights: Weights, dtype: str = "float32") -> CNN:
    """The network of ``spec`` holding ``weights`` (canonical layout, cast to ``dtype``)."""
    all_layers = spec_layers(spec)
    owned = {name: np.array(value, dtype=dtype) for name, value in weights.items()}
    return CNN(spec, np.dtype(dtype), all_layers, owned, new_workspaces(all_layers))


# ----------------------------------------------------------------------------- forward, backward


class ConvLayerCache(NamedTuple):
    """A conv layer's caches. ``conv`` is a ``fused.ConvPoolCache`` where the convolution also
    did the pooling of the layer after it (a ``grouped.GroupedConvCache`` for groups > 1);
    ``activation`` is None where the activation was deferred to after the pooling (the pool
    layer's cache holds it then)."""

    conv: ops.ConvCache | fused.ConvPoolCache | grouped.GroupedConvCache
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


class AddCache(NamedTuple):
    """An add layer's backward needs nothing but its gradient: this marks the layer."""


LayerCache = (
    ConvLayerCache
    | PoolLayerCache
    | FlattenCache
    | DenseLayerCache
    | AddCache
    | norm.BatchNormCache
    | ops.ActivationCache
    | pooling.AvgPoolCache
    | pooling.GlobalAvgPoolCache
    | ops.DropoutCache
)


def _fuses_pool(model: CNN, index: int) -> Layer | None:
    """The pool layer that conv layer ``index`` may pool itself (and apply its activation
    after): the next layer, when it is a max-pooling that reads only this output, which no
    other layer reads; else None."""
    layer = model.layers[index]
    following = model.layers[index + 1] if index + 1 < len(model.layers) else None
    if (
        following is None
        or following.kind != "pool"
        or following.inputs != (layer.name,)
        or layer.name in model.kept
        or layer.groups != 1
    ):
        return None
    return following


def forward(
    model: CNN,
    x: np.ndarray,
    *,
    train: bool = False,
    batch_stats: bool = False,
    rng: np.random.Generator | None = None,
    keep: dict[str, np.ndarray] | None = None,
    every_layer: bool = False,
    scratch: bool = False,
    combine: norm.Combine | None = None,
) -> tuple[np.ndarray, list[tuple[Layer, LayerCache]]]:
    """Logits ``(N, K)`` for images ``x (N, H, W, C)``, and the caches for ``backward``.

    ``train=True`` is training mode: the per-layer workspaces (the backward pass must follow
    before the next training forward), dropout with ``rng``, batchnorm with the batch's
    statistics (``update_running`` then moves the running ones). ``batch_stats=True`` alone
    normalises with the batch's statistics without the rest (``loss_and_grads``); otherwise
    batchnorm uses the running statistics (evaluation mode). ``keep`` (a dict) receives every
    layer of ``cnn_common.spec.MAP_KINDS`` (a conv after its activation) by layer name, and
    every layer's output with ``every_layer``, which also applies each activation before
    pooling, as the spec reads (the layer-by-layer trace compares these with the other
    frameworks'). ``scratch=True`` uses the workspaces without training (inference): the
    logits and kept maps live in them until the next forward of this model, so the caller
    copies what it keeps. Without ``keep``, a convolution followed by pooling windows that
    tile its output runs as one ``numpy_cnn.fused.conv_pool_forward``. ``combine`` (training):
    ``x`` is a shard of the batch, and batchnorm takes the whole batch's statistics through it
    (``numpy_cnn.norm``).
    """
    w = model.weights
    caches: list[tuple[Layer, LayerCache]] = []
    out, before = x, IMAGE
    held: dict[str, np.ndarray] = {IMAGE: x}  # outputs read again later, by name
    deferred = ""  # the activation of a conv layer, applied after its pooling
    pooled_here = False  # the last conv layer pooled its output itself
    statistics = train or batch_stats
    cache: LayerCache
    conv_cache: ops.ConvCache | fused.ConvPoolCache | grouped.GroupedConvCache
    for index, layer in enumerate(model.layers):
        ws = model.workspaces[layer.name] if train or scratch else None
        name = layer.name
        if layer.inputs[0] != before:
            out = held[layer.inputs[0]]
        if layer.kind == "conv":
            kernel = w[f"{name}.kernel"]
            bias = w.get(f"{name}.bias")
            following = _fuses_pool(model, index) if not every_layer else None
            if layer.groups > 1:
                out, conv_cache = grouped.grouped_conv_forward(
                    out, kernel, bias, layer.stride, layer.pad, layer.groups, ws
                )
                pooled_here = False
            else:
                if bias is None:  # no bias: a zero one adds nothing, exactly
                    bias = np.zeros(kernel.shape[3], dtype=kernel.dtype)
                if following and keep is None and following.stride == following.kernel_size:
                    # The convolution and the pooling that tiles its output in one operation
                    # (see numpy_cnn.fused); the pool layer then only applies the activation.
                    out, conv_cache = fused.conv_pool_forward(
                        out, kernel, bias, layer.stride, layer.pad, following.kernel_size, ws
                    )
                    pooled_here = True
                else:
                    out, conv_cache = ops.conv2d_forward(
                        out, kernel, bias, layer.stride, layer.pad, ws
                    )
                    pooled_here = False
            if following is not None:
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
        elif layer.kind == "batchnorm":
            batch = statistics and layer.batch_statistics  # not a frozen one in inference mode
            running = None if batch else (w[f"{name}.moving_mean"], w[f"{name}.moving_variance"])
            gamma, beta = w[f"{name}.gamma"], w[f"{name}.beta"]
            out, cache = norm.batchnorm_forward(
                out, gamma, beta, layer.epsilon, running, ws, combine
            )
        elif layer.kind == "activation":
            out, cache = ops.activation_forward(out, layer.activation, ws)
        elif layer.kind == "avgpool":
            out, cache = pooling.avgpool_forward(out, layer.kernel_size, layer.stride, ws)
        elif layer.kind == "global_avgpool":
            out, cache = pooling.global_avgpool_forward(out)
        elif layer.kind == "add":
            out, cache = ops.add_forward(out, held[layer.inputs[1]], ws), AddCache()
        elif layer.kind == "flatten":
            cache = FlattenCache(out.shape)
            out = out.reshape(out.shape[0], -1)  # (N, H*W*C), H, W, C order
        elif layer.kind in ("dense", "logits"):
            out, dense_cache = ops.dense_forward(out, w[f"{name}.kernel"], w[f"{name}.bias"])
            out, act_cache = ops.activation_forward(out, layer.activation, ws)
            cache = DenseLayerCache(dense_cache, act_cache)
        else:  # dropout
            out, cache = ops.dropout_forward(out, layer.rate, rng if train else None)
        if keep is not None and name not in keep and (every_layer or layer.kind in MAP_KINDS):
            keep[name] = out
        if name in model.kept:
            held[name] = out
        before = name
        caches.append((layer, cache))
    return out, caches


def _add_into(
    model: CNN, pending: dict[str, np.ndarray], owned: set[str], name: str, grad: np.ndarray
) -> None:
    """Add ``grad`` to the gradient of tensor ``name`` gathered so far: the first contribution
    is held as it is; a second is summed into a buffer of the tensor's own workspace, which
    later ones are added to in place (no contribution is ever written to)."""
    if name not in pending:
        pending[name] = grad
    elif name in owned:
        pending[name] += grad
    else:
        total = model.workspaces[name].get("grad_sum", grad.shape, grad.dtype)
        np.add(pending[name], grad, out=total)
        pending[name] = total
        owned.add(name)


def backward(
    model: CNN,
    dlogits: np.ndarray,
    caches: list[tuple[Layer, LayerCache]],
    inputs: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Gradients of every trainable tensor from ``dlogits (N, K)``, walking the caches in
    reverse; a tensor several layers read receives the sum of their contributions.

    ``inputs`` (a dict) receives, by layer name, the total gradient of the tensor each layer
    reads first (``inputs[0]``; the image's too, which training never needs), except where a
    convolution did the pooling of the layer after it (its own output's gradient is never
    formed then).
    """
    grads: dict[str, np.ndarray] = {}
    pending: dict[str, np.ndarray] = {caches[-1][0].name: dlogits}
    owned: set[str] = set()
    totals: dict[str, np.ndarray] = {}  # complete gradients by tensor, for ``inputs``
    for layer, cache in reversed(caches):
        name = layer.name
        ws = model.workspaces[name]
        dout = pending.pop(name, None)
        if dout is None:  # nothing reads this output: no gradient reaches it
            continue
        fused_pool = isinstance(cache, ConvLayerCache) and isinstance(
            cache.conv, fused.ConvPoolCache
        )  # then ``dout`` is the gradient of the pooled map, not of this layer's output
        if inputs is not None and not fused_pool:
            totals[name] = dout.copy()  # workspaces are reused by the layers before
        source = layer.inputs[0]
        if isinstance(cache, ConvLayerCache):
            if cache.activation is not None:
                dout = ops.activation_backward(dout, cache.activation, ws)
            # The image needs no gradient in training.
            need_dx = source != IMAGE or inputs is not None
            if isinstance(cache.conv, fused.ConvPoolCache):
                dout, dw, db = fused.conv_pool_backward(dout, cache.conv, need_dx, ws)
            elif isinstance(cache.conv, grouped.GroupedConvCache):
                dout, dw, db = grouped.grouped_conv_backward(dout, cache.conv, need_dx, ws)
            else:
                dout, dw, db = ops.conv2d_backward(dout, cache.conv, need_dx, ws)
            grads[f"{name}.kernel"] = dw
            if f"{name}.bias" in layer.params:
                grads[f"{name}.bias"] = db
            if dout is None:
                continue
        elif isinstance(cache, PoolLayerCache):
            if cache.activation is not None:
                dout = ops.activation_backward(dout, cache.activation, ws)
            if cache.pool is None:  # pooled by the convolution before: its backward routes it
                pending[source] = dout
                continue
            dout = pooling.maxpool_backward(dout, cache.pool, ws)
        elif isinstance(cache, norm.BatchNormCache):
            dout, grads[f"{name}.gamma"], grads[f"{name}.beta"] = norm.batchnorm_backward(
                dout, cache, ws
            )
        elif isinstance(cache, ops.ActivationCache):
            dout = ops.activation_backward(dout, cache, ws)
        elif isinstance(cache, pooling.AvgPoolCache):
            dout = pooling.avgpool_backward(dout, cache, ws)
        elif isinstance(cache, pooling.GlobalAvgPoolCache):
            dout = pooling.global_avgpool_backward(dout, cache, ws)
        elif isinstance(cache, AddCache):
            dout, djoin = ops.add_backward(dout)
            _add_into(model, pending, owned, layer.inputs[1], djoin)
        elif isinstance(cache, FlattenCache):
            dout = dout.reshape(cache.x_shape)  # (N, H, W, C)
        elif isinstance(cache, DenseLayerCache):
            dout = ops.activation_backward(dout, cache.activation, ws)
            dout, dw, db = ops.dense_backward(dout, cache.dense)
            grads[f"{name}.kernel"], grads[f"{name}.bias"] = dw, db
        else:  # dropout
            dout = ops.dropout_backward(dout, cache)
        _add_into(model, pending, owned, source, dout)
    if inputs is not None:
        if IMAGE in pending:
            totals[IMAGE] = pending[IMAGE].copy()
        for layer, _ in reversed(caches):  # in the order the backward pass reached them
            if layer.inputs[0] in totals:
                inputs[layer.name] = totals[layer.inputs[0]]
    for name in model.trainable:
        if name not in grads:  # a layer no gradient reaches
            grads[name] = np.zeros_like(model.weights[name])
    return {name: grads[name] for name in model.trainable}


def update_running(model: CNN, caches: list[tuple[Layer, LayerCache]]) -> None:
    """Move every batchnorm layer's running statistics once, in place, from the batch
    statistics of a training-mode forward (``norm.running_update``, in the layer's
    conventions); a frozen one in inference mode normalised with them and keeps them."""
    for layer, cache in caches:
        if isinstance(cache, norm.BatchNormCache) and cache.batch:
            mean, variance = f"{layer.name}.moving_mean", f"{layer.name}.moving_variance"
            new_mean, new_variance = norm.running_update(
                model.weights[mean],
                model.weights[variance],
                cache,
                layer.momentum,
                layer.momentum_convention,
                layer.variance,
            )
            model.weights[mean][...] = new_mean
            model.weights[variance][...] = new_variance
