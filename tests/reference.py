"""The float64 NumPy reference every framework is checked against, and one numeric gradient.

``reference_logits`` is the spec's forward pass written as directly as NumPy allows: padding
from ``Layer.pad``, every window with ``sliding_window_view`` and one ``einsum`` per layer. It
shares no code with ``numpy_cnn`` (which uses im2col and GEMMs), so agreeing with it means
something. Gradients are checked against ``numeric_gradient`` (``cnn_common.numeric``'s
central differences, re-exported here) of ``reference_loss``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cnn_common.numeric import numeric_gradient  # noqa: F401 - re-exported for the tests
from cnn_common.spec import ModelSpec, layers

ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda z: np.maximum(z, 0.0),
    "tanh": np.tanh,
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "linear": lambda z: z,
}


def _windows(x: np.ndarray, k: int, stride: int) -> np.ndarray:
    """``(N, H, W, C) -> (N, Ho, Wo, C, k, k)``: every k x k window, ``stride`` apart."""
    return sliding_window_view(x, (k, k), axis=(1, 2))[:, ::stride, ::stride]


def reference_logits(spec: ModelSpec, weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Logits ``(N, K)`` of images ``x (N, H, W, C)`` in float64 (dropout off)."""
    out = np.asarray(x, dtype=np.float64)
    w = {name: np.asarray(value, dtype=np.float64) for name, value in weights.items()}
    for layer in layers(spec):
        if layer.kind == "conv":
            padded = np.pad(out, ((0, 0), layer.pad[0], layer.pad[1], (0, 0)))
            windows = _windows(padded, layer.kernel_size, layer.stride)  # (N, Ho, Wo, C, k, k)
            z = np.einsum("nhwcij,ijcf->nhwf", windows, w[f"{layer.name}.kernel"])
            out = ACTIVATIONS[layer.activation](z + w[f"{layer.name}.bias"])
        elif layer.kind == "pool":
            out = _windows(out, layer.kernel_size, layer.stride).max(axis=(4, 5))
        elif layer.kind == "flatten":
            out = out.reshape(len(out), -1)  # H, W, C order
        elif layer.kind in ("dense", "logits"):
            z = out @ w[f"{layer.name}.kernel"] + w[f"{layer.name}.bias"]
            out = ACTIVATIONS[layer.activation](z)
    return out


def reference_loss(
    spec: ModelSpec, weights: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray
) -> float:
    """Mean softmax cross-entropy of the reference logits against labels ``y (N,)``."""
    z = reference_logits(spec, weights, x)
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -float(log_p[np.arange(len(y)), np.asarray(y)].mean())


def sample_indices(
    shape: tuple[int, ...], count: int, rng: np.random.Generator
) -> list[tuple[int, ...]]:
    """Every index of a small tensor, or ``count`` random ones of a large one."""
    size = int(np.prod(shape))
    flat = np.arange(size) if size <= count else rng.choice(size, count, replace=False)
    return [tuple(int(i) for i in np.unravel_index(f, shape)) for f in flat]
