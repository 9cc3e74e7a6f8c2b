"""Backprop checked against central finite differences: ``numpy-cnn gradcheck``.

Every backward pass in ``numpy_cnn.ops`` is hand-written, so each one is checked against the
derivative measured from its own forward pass, ``(f(a + h) - f(a - h)) / 2h``, in float64
(in float32 the rounding of ``f`` swamps the difference). A layer is checked through the
scalar ``f = sum(forward(...) * G)`` with a fixed random ``G``, whose gradient is exactly what
the backward pass returns for ``dout = G``; the loss is checked directly; the whole network
through its mean cross-entropy, on a sample of every weight tensor's entries and of the image.

ReLU and max-pooling are piecewise linear: where ``a ± h`` lands on another piece (a ReLU
input within ``h`` of 0, two pooled values within ``h`` of each other) the difference measures
neither side's slope. Layer inputs are drawn away from the kinks; in the network, an entry
whose perturbation changes any ReLU mask or pooling winner is measured again with ``h / 10``
and ``h / 100`` (a 28x28 map with batchnorm holds so many ReLU inputs that ``h`` itself moves
one of them across 0 for almost every entry of the first layers); one that still crosses a
kink is left out, counted, and replaced by another entry of the tensor where one is found.

The error of an entry is ``|a - n| / max(|a|, |n|, FLOOR)``: relative, and absolute below
``FLOOR``, where the differences' own rounding (about ``1e-16 * |f| / h``, 1e-11 for the
network's loss) would otherwise pass for a relative error of a tiny gradient. ``h = 1e-5``:
smaller makes that rounding larger, larger crosses more kinks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from cnn_common.numeric import numeric_gradient
from cnn_common.spec import Layer, ModelSpec, layers, same_padding
from cnn_common.weights import init_weights
from numpy_cnn import fused, grouped, norm, ops, pooling
from numpy_cnn.network import (
    CNN,
    ConvLayerCache,
    DenseLayerCache,
    LayerCache,
    PoolLayerCache,
    backward,
    forward,
    make_network,
)

STEP = 1e-5  # h of the central differences
# the network's smaller steps for an entry whose step crossed a kink: the differences' rounding
# grows to about 1e-16 * |f| / h, 2.5e-9 for the loss at 1e-7, within the tolerance of a
# gradient above 2.5e-3 and of every gradient the first layers of the example specs have
KINK_STEPS = (STEP / 10, STEP / 100)
TOLERANCE = 1e-6  # the largest relative error that passes
FLOOR = 1e-4  # gradients below this are compared absolutely (1e-10 at the tolerance)

C = TypeVar("C")  # the cache type of the layer being checked


@dataclass(frozen=True)
class Check:
    """One tensor's gradient checked: ``error`` is the largest relative error over the
    ``checked`` entries; ``skipped`` entries crossed a kink and were left out."""

    case: str  # "conv (stride 2, 'same' pads)", "network (seed spec, 2 images)", ...
    tensor: str  # "x", "w", "b", "logits", "conv1.kernel", "image", ...
    checked: int
    error: float
    skipped: int = 0

    @property
    def ok(self) -> bool:
        return self.checked > 0 and self.error <= TOLERANCE


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """The largest ``|a - n| / max(|a|, |n|, FLOOR)`` over the entries (NaN entries left out)."""
    a, n = np.ravel(analytic), np.ravel(numeric)
    keep = ~np.isnan(n)
    a, n = a[keep], n[keep]
    if not a.size:
        return math.nan
    return float((np.abs(a - n) / np.maximum(np.maximum(np.abs(a), np.abs(n)), FLOOR)).max())


def _every_index(array: np.ndarray) -> list[tuple[int, ...]]:
    return [tuple(int(i) for i in index) for index in np.ndindex(array.shape)]


def _check_layer(
    case: str,
    run: Callable[[], tuple[np.ndarray, C]],
    grads: Callable[[np.ndarray, C], dict[str, np.ndarray]],
    inputs: dict[str, np.ndarray],
    rng: np.random.Generator,
) -> list[Check]:
    """``run()`` is the forward pass over ``inputs`` (read when called), ``grads(dout, cache)``
    the backward pass by input name: each input's every entry, through ``sum(out * G)``."""
    out, cache = run()
    upstream = rng.normal(size=out.shape)  # G: the gradient arriving from above
    analytic = grads(upstream, cache)

    def f() -> float:
        return float(np.sum(run()[0] * upstream))

    checks = []
    for name, array in inputs.items():
        numeric = numeric_gradient(f, array, _every_index(array), STEP)
        checks.append(Check(case, name, array.size, relative_error(analytic[name], numeric)))
    return checks


def _conv_inputs(
    rng: np.random.Generator, n: int, size: int, c: int, k: int, f: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random float64 images ``(N, H, W, C)``, kernel ``(KH, KW, C, F)`` and bias ``(F,)``."""
    return rng.normal(size=(n, size, size, c)), rng.normal(size=(k, k, c, f)), rng.normal(size=f)


def _conv_grads(dout: np.ndarray, cache: ops.ConvCache) -> dict[str, np.ndarray]:
    dx, dw, db = ops.conv2d_backward(dout, cache)
    return {"x": dx, "w": dw, "b": db}


def _conv_pool_grads(dout: np.ndarray, cache: fused.ConvPoolCache) -> dict[str, np.ndarray]:
    dx, dw, db = fused.conv_pool_backward(dout, cache)
    return {"x": dx, "w": dw, "b": db}


def _grouped_grads(dout: np.ndarray, cache: grouped.GroupedConvCache) -> dict[str, np.ndarray]:
    dx, dw, db = grouped.grouped_conv_backward(dout, cache)
    return {"x": dx, "w": dw, "b": db}


def _batchnorm_grads(dout: np.ndarray, cache: norm.BatchNormCache) -> dict[str, np.ndarray]:
    dx, dgamma, dbeta = norm.batchnorm_backward(dout, cache)
    return {"x": dx, "gamma": dgamma, "beta": dbeta}


def _dense_grads(dout: np.ndarray, cache: ops.DenseCache) -> dict[str, np.ndarray]:
    dx, dw, db = ops.dense_backward(dout, cache)
    return {"x": dx, "w": dw, "b": db}


def _away_from_zero(x: np.ndarray) -> np.ndarray:
    """``x`` moved 0.1 further from 0: no ReLU input within ``STEP`` of its kink."""
    return x + 0.1 * np.sign(x)


def layer_checks(seed: int = 0) -> list[Check]:
    """Every layer type's backward pass against its own forward pass, on small random float64
    inputs: conv (both im2col paths, stride 1 and 2, TensorFlow's asymmetric 'same' pads),
    conv fused with the pooling after it, max-pooling (tiling and overlapping windows), relu,
    tanh, sigmoid, dense, dropout with a fixed mask, the softmax cross-entropy, and the
    layer list's kinds (``new_kind_checks``)."""
    rng = np.random.default_rng(seed)
    checks: list[Check] = []
    for n, size, c, k, f, stride, pad in (
        (2, 6, 3, 3, 4, 1, ops.NO_PAD),  # C*KW < 16: im2col's transposed copy
        (2, 6, 6, 3, 4, 2, None),  # C*KW >= 16: its strided copy; 'same' pads, odd one last
    ):
        pad = pad or (same_padding(size, k, stride), same_padding(size, k, stride))
        case = f"conv {k}x{k}, {c} channels, stride {stride}, pads {pad}"
        x, w, b = _conv_inputs(rng, n, size, c, k, f)
        checks += _check_layer(
            case,
            lambda x=x, w=w, b=b, stride=stride, pad=pad: ops.conv2d_forward(x, w, b, stride, pad),
            _conv_grads,
            {"x": x, "w": w, "b": b},
            rng,
        )
    for n, size, c, k, f, stride, pad in (
        (2, 7, 1, 3, 4, 1, ops.NO_PAD),  # 5x5 maps: the last row and column unpooled
        (2, 8, 6, 3, 4, 1, ((1, 1), (1, 1))),  # C*KW >= 16, padded: 8x8 maps
    ):
        case = f"conv {k}x{k} + maxpool 2x2, {c} channels, pads {pad}"
        x, w, b = _conv_inputs(rng, n, size, c, k, f)
        checks += _check_layer(
            case,
            lambda x=x, w=w, b=b, stride=stride, pad=pad: fused.conv_pool_forward(
                x, w, b, stride, pad, 2
            ),
            _conv_pool_grads,
            {"x": x, "w": w, "b": b},
            rng,
        )
    for case, (size, window, stride) in {
        "maxpool 2x2, stride 2 (7x7: the last row and column unread)": (7, 2, 2),
        "maxpool 3x3, stride 2 (overlapping windows)": (7, 3, 2),
    }.items():
        x = rng.normal(size=(2, size, size, 3))  # continuous: no two values within STEP
        checks += _check_layer(
            case,
            lambda x=x, window=window, stride=stride: pooling.maxpool_forward(x, window, stride),
            lambda dout, cache: {"x": pooling.maxpool_backward(dout, cache)},
            {"x": x},
            rng,
        )
    for kind in ("relu", "tanh", "sigmoid"):
        x = _away_from_zero(rng.normal(size=(4, 6)))
        checks += _check_layer(
            kind,
            lambda x=x, kind=kind: ops.activation_forward(x, kind),
            lambda dout, cache: {"x": ops.activation_backward(dout, cache)},
            {"x": x},
            rng,
        )
    x, w, b = rng.normal(size=(4, 6)), rng.normal(size=(6, 5)), rng.normal(size=5)
    checks += _check_layer(
        "dense", lambda: ops.dense_forward(x, w, b), _dense_grads, {"x": x, "w": w, "b": b}, rng
    )
    x = rng.normal(size=(4, 6))
    mask_seed = int(rng.integers(2**32))
    checks += _check_layer(
        "dropout 0.5 (a fixed mask)",
        # The same generator state every call: the same mask for +h and -h.
        lambda: ops.dropout_forward(x, 0.5, np.random.default_rng(mask_seed)),
        lambda dout, cache: {"x": ops.dropout_backward(dout, cache)},
        {"x": x},
        rng,
    )
    logits, y = rng.normal(size=(4, 5)), rng.integers(0, 5, size=4)
    _, dlogits = ops.softmax_cross_entropy(logits, y)
    numeric = numeric_gradient(
        lambda: ops.softmax_cross_entropy(logits, y)[0], logits, _every_index(logits), STEP
    )
    checks.append(
        Check("softmax cross-entropy", "logits", logits.size, relative_error(dlogits, numeric))
    )
    return checks + new_kind_checks(rng)


def new_kind_checks(rng: np.random.Generator) -> list[Check]:
    """The kinds of the layer-list form: grouped and depthwise convolution (with and without
    bias), batchnorm in training mode (the batch's statistics, which depend on ``x``) and in
    evaluation mode (running statistics), average pooling (tiling and overlapping windows),
    global average pooling and add."""
    checks: list[Check] = []
    for case, (c, f, groups, stride, bias) in {
        "grouped conv 3x3, 4 channels, 2 groups, 6 filters, 'same' pads": (4, 6, 2, 1, True),
        "depthwise conv 3x3, 3 channels, stride 2, 'same' pads, no bias": (3, 3, 3, 2, False),
    }.items():
        x = rng.normal(size=(2, 6, 6, c))
        w = rng.normal(size=(3, 3, c // groups, f))
        b = rng.normal(size=f) if bias else None
        pad = (same_padding(6, 3, stride), same_padding(6, 3, stride))
        inputs = {"x": x, "w": w, **({"b": b} if b is not None else {})}
        checks += _check_layer(
            case,
            lambda x=x, w=w, b=b, stride=stride, pad=pad, groups=groups: (
                grouped.grouped_conv_forward(x, w, b, stride, pad, groups)
            ),
            _grouped_grads,
            inputs,
            rng,
        )
    x = rng.normal(1.0, 2.0, size=(2, 3, 4, 3))
    gamma, beta = rng.normal(1.0, 0.2, size=3), rng.normal(size=3)
    running = (rng.normal(size=3), rng.uniform(0.5, 2.0, size=3))
    for case, stats in {
        "batchnorm, training mode (the batch's statistics)": None,
        "batchnorm, evaluation mode (running statistics)": running,
    }.items():
        checks += _check_layer(
            case,
            lambda stats=stats: norm.batchnorm_forward(x, gamma, beta, 1e-5, stats),
            _batchnorm_grads,
            {"x": x, "gamma": gamma, "beta": beta},
            rng,
        )
    for case, (size, window, stride) in {
        "avgpool 2x2, stride 2 (7x7: the last row and column unread)": (7, 2, 2),
        "avgpool 3x3, stride 2 (overlapping windows)": (7, 3, 2),
    }.items():
        x = rng.normal(size=(2, size, size, 3))
        checks += _check_layer(
            case,
            lambda x=x, window=window, stride=stride: pooling.avgpool_forward(x, window, stride),
            lambda dout, cache: {"x": pooling.avgpool_backward(dout, cache)},
            {"x": x},
            rng,
        )
    x = rng.normal(size=(2, 3, 4, 5))
    checks += _check_layer(
        "global avgpool",
        lambda: pooling.global_avgpool_forward(x),
        lambda dout, cache: {"x": pooling.global_avgpool_backward(dout, cache)},
        {"x": x},
        rng,
    )
    a, b = rng.normal(size=(2, 3, 3, 4)), rng.normal(size=(2, 3, 3, 4))
    checks += _check_layer(
        "add",
        lambda: (ops.add_forward(a, b), None),
        lambda dout, _: dict(zip(("a", "b"), ops.add_backward(dout), strict=True)),
        {"a": a, "b": b},
        rng,
    )
    return checks


def _pieces(caches: list[tuple[Layer, LayerCache]]) -> list[np.ndarray]:
    """The linear piece the network is on: every ReLU's active mask and every max-pooling
    window's winner, from the forward pass's caches."""
    found: list[np.ndarray] = []
    for _, cache in caches:
        if isinstance(cache, ops.ActivationCache) and cache.kind == "relu":
            found.append(cache.out > 0)  # an activation layer of its own
        if isinstance(cache, ConvLayerCache) and isinstance(cache.conv, fused.ConvPoolCache):
            found.append(fused.conv_pool_winners(cache.conv))  # pooled by the convolution
        if isinstance(cache, PoolLayerCache) and cache.pool is not None:
            found.append(pooling.maxpool_winners(cache.pool))
        activation = (
            cache.activation
            if isinstance(cache, ConvLayerCache | PoolLayerCache | DenseLayerCache)
            else None
        )
        if activation is not None and activation.kind == "relu":
            found.append(activation.out > 0)
    return found


def _sample(shape: tuple[int, ...], count: int, rng: np.random.Generator) -> list[tuple[int, ...]]:
    """Every index of a tensor of at most ``count`` entries, else ``count`` random ones."""
    size = math.prod(shape)
    flat = np.arange(size) if size <= count else rng.choice(size, count, replace=False)
    return [tuple(int(i) for i in np.unravel_index(f, shape)) for f in flat]


def network_checks(
    spec: ModelSpec | None = None,
    seed: int = 0,
    samples: int = 20,
    images: int = 2,
    label: str = "",
) -> list[Check]:
    """The whole network of ``spec`` (default the seed model) in float64, batchnorm in
    training mode (the batch's statistics, as ``loss_and_grads``): the gradient of the mean
    cross-entropy with respect to every trainable tensor and the image, ``samples`` entries of
    each, at the canonical initial kernels of ``seed`` with random biases (zero biases put
    every blank pixel's ReLU input exactly on the kink) and random batchnorm scales and
    shifts, on random images. ``label`` names the spec in the report."""
    spec = spec or ModelSpec()
    rng = np.random.default_rng(seed)
    weights = init_weights(spec, seed, "float64")
    for name, value in weights.items():
        if name.endswith((".bias", ".beta")):
            weights[name] = rng.normal(0.0, 0.1, size=value.shape)
        elif name.endswith(".gamma"):
            weights[name] = rng.normal(1.0, 0.1, size=value.shape)
    model: CNN = make_network(spec, weights, "float64")
    x = rng.uniform(0.0, 1.0, size=(images, *spec.input_shape))  # (N, H, W, C)
    y = rng.integers(0, spec.num_classes, size=images)
    logits, caches = forward(model, x, batch_stats=True)
    _, dlogits = ops.softmax_cross_entropy(logits, y)
    inputs: dict[str, np.ndarray] = {}
    analytic = backward(model, dlogits, caches, inputs)
    analytic["image"] = inputs[layers(spec)[0].name]  # the gradient of the first layer's input
    base = _pieces(caches)

    def loss() -> float:
        """The loss, or NaN where the perturbation moved the network to another piece."""
        out, now = forward(model, x, batch_stats=True)
        same = all(np.array_equal(a, b) for a, b in zip(base, _pieces(now), strict=True))
        return ops.softmax_cross_entropy(out, y)[0] if same else math.nan

    label = label or ("seed spec" if spec == ModelSpec() else "spec")
    case = f"network ({label}, {images} images)"

    def measure(array: np.ndarray, index: tuple[int, ...]) -> float:
        """The entry's central difference at the largest step that crosses no kink (NaN:
        none of them)."""
        for h in (STEP, *KINK_STEPS):
            (value,) = numeric_gradient(loss, array, [index], h)
            if not math.isnan(value):
                return float(value)
        return math.nan

    checks = []
    for name, array in {**model.trainable_weights(), "image": x}.items():
        indices = _sample(array.shape, samples, rng)
        numeric = [measure(array, index) for index in indices]
        skipped = int(np.isnan(numeric).sum())
        if skipped:  # entries on a kink are replaced by others, as many as were left out
            tried = set(indices)
            for flat in rng.permutation(array.size)[: 4 * samples]:
                index = tuple(int(i) for i in np.unravel_index(flat, array.shape))
                if len(indices) - int(np.isnan(numeric).sum()) >= samples:
                    break
                if index not in tried:
                    indices.append(index)
                    numeric.append(measure(array, index))
            skipped = int(np.isnan(numeric).sum())
        picked = np.array([analytic[name][index] for index in indices])
        error = relative_error(picked, np.array(numeric))
        checks.append(Check(case, name, len(indices) - skipped, error, skipped))
    return checks


def run_checks(
    seed: int = 0, samples: int = 20, specs: dict[str, ModelSpec] | None = None
) -> list[Check]:
    """Every layer type, then the whole network of each of ``specs`` (by label; default the
    seed model)."""
    networks = specs or {"seed spec": ModelSpec()}
    checks = layer_checks(seed)
    for label, spec in networks.items():
        checks += network_checks(spec, seed=seed, samples=samples, label=label)
    return checks


def report(checks: list[Check]) -> list[str]:
    """One line per check, PASS or FAIL against ``TOLERANCE``, and a summary line."""
    lines = [
        f"Backprop against central differences (h = {STEP:g}), float64; an entry's error is "
        f"|a - n| / max(|a|, |n|, {FLOOR:g}); tolerance {TOLERANCE:g}",
        "",
        f"{'layer':<62} {'gradient of':<22} {'entries':>18} {'max rel. error':>15}  result",
    ]
    for check in checks:
        entries = f"{check.checked}" + (f" (+{check.skipped} on a kink)" if check.skipped else "")
        lines.append(
            f"{check.case:<62} {check.tensor:<22} {entries:>18} {check.error:>15.2e}  "
            + ("PASS" if check.ok else "FAIL")
        )
    failed = [c for c in checks if not c.ok]
    lines.append("")
    if failed:
        lines.append(f"{len(failed)} of {len(checks)} checks FAIL")
    else:
        lines.append(f"all {len(checks)} checks PASS")
    return lines
