"""Inside a layer, CNN Explainer's way: one output value and the arithmetic that made it.

``explain`` takes a framework's layer-by-layer outputs (``forward/<layer>`` of the contract's
``layer_trace``), the canonical weights and one output position ``(row, col, channel)`` of a
map layer, and returns what that value was computed from: for a convolution, the receptive
field's input values, the kernel slice, their products, the dot product, the bias, the
activation; for max- or average pooling, the window and its maximum or mean; for batchnorm,
the input, the running statistics, gamma and beta; for an ``add``, its two inputs. The sum is
recomputed here in float64 beside the framework's own output value, so a student can check
every step, and the two frameworks' numbers can be read side by side.

``receptive_field`` walks the layers back to the image: the box of input pixels that can
reach the value (through every branch of a residual join).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnn_common.graph import IMAGE, Layer

ACTIVATIONS = {
    "relu": lambda v: max(v, 0.0),
    "tanh": np.tanh,
    "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
    "linear": lambda v: v,
}
WINDOW_KINDS = ("conv", "pool", "avgpool")


def _window(layer: Layer, row: int, col: int) -> tuple[int, int, int, int]:
    """The input rows ``[r0, r1)`` and columns ``[c0, c1)`` (unpadded coordinates, may reach
    outside the map into the padding) that output ``(row, col)`` of ``layer`` reads."""
    (top, _), (left, _) = layer.pad if layer.kind == "conv" else ((0, 0), (0, 0))
    r0, c0 = row * layer.stride - top, col * layer.stride - left
    return r0, r0 + layer.kernel_size, c0, c0 + layer.kernel_size


def receptive_field(
    by_name: dict[str, Layer], name: str, box: tuple[int, int, int, int], image: tuple[int, int]
) -> tuple[int, int, int, int]:
    """The image pixels ``[r0, r1) x [c0, c1)`` that reach the output box ``box`` (rows, then
    columns, end exclusive) of layer ``name``, clipped to the image ``(H, W)``."""
    if name == IMAGE:
        r0, r1, c0, c1 = box
        return max(r0, 0), min(r1, image[0]), max(c0, 0), min(c1, image[1])
    layer = by_name[name]
    r0, r1, c0, c1 = box
    if layer.kind in WINDOW_KINDS:
        first, last = _window(layer, r0, c0), _window(layer, r1 - 1, c1 - 1)
        box = (first[0], last[1], first[2], last[3])
    boxes = [receptive_field(by_name, source, box, image) for source in layer.inputs]
    return (
        min(b[0] for b in boxes),
        max(b[1] for b in boxes),
        min(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def _patch(x: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """``x (H, W, C)`` rows ``[r0, r1)``, columns ``[c0, c1)``, zeros where that reaches into
    the padding: ``(r1 - r0, c1 - c0, C)``."""
    h, w, c = x.shape
    out = np.zeros((r1 - r0, c1 - c0, c), dtype=np.float64)
    rs, re, cs, ce = max(r0, 0), min(r1, h), max(c0, 0), min(c1, w)
    if rs < re and cs < ce:
        out[rs - r0 : re - r0, cs - c0 : ce - c0] = x[rs:re, cs:ce]
    return out


def check_position(layer: Layer, row: int, col: int, channel: int) -> None:
    """A ``ValueError`` naming the map's size unless ``(row, col, channel)`` lies in it."""
    h, w, c = layer.output_shape
    if not (0 <= row < h and 0 <= col < w and 0 <= channel < c):
        raise ValueError(f"{layer.name} is {h}x{w}x{c}: it has no value ({row}, {col}, {channel})")


def explain(
    layer: Layer,
    outputs: dict[str, np.ndarray],
    weights: dict[str, np.ndarray],
    row: int,
    col: int,
    channel: int,
) -> dict[str, Any]:
    """The computation of output ``(row, col, channel)`` of ``layer`` from ``outputs`` (layer
    name -> its output ``(H, W, C)`` in one framework, ``IMAGE`` -> the image) and the
    canonical ``weights``. Every number as a plain float, arrays as nested lists."""
    check_position(layer, row, col, channel)
    x = np.asarray(outputs[layer.inputs[0]], dtype=np.float64)
    value = float(outputs[layer.name][row, col, channel])
    done: dict[str, Any] = {"layer": layer.name, "kind": layer.kind, "output": value}
    if layer.kind in WINDOW_KINDS:
        r0, r1, c0, c1 = _window(layer, row, col)
        done["window"] = [r0, r1, c0, c1]
    if layer.kind == "conv":
        kernel = np.asarray(weights[f"{layer.name}.kernel"], dtype=np.float64)  # (KH, KW, Cg, F)
        per_group = kernel.shape[2]
        first = (
            channel // (layer.output_shape[2] // layer.groups)
        ) * per_group  # the group's first input channel
        patch = _patch(x, r0, r1, c0, c1)[:, :, first : first + per_group]  # (KH, KW, Cg)
        taps = kernel[:, :, :, channel]
        bias_name = f"{layer.name}.bias"
        bias = float(weights[bias_name][channel]) if bias_name in weights else 0.0
        total = float((patch * taps).sum())
        pre = total + bias
        done.update(
            input_channels=[first, first + per_group],
            patch=patch.tolist(),
            kernel=taps.tolist(),
            products=(patch * taps).tolist(),
            dot=total,
            bias=bias,
            pre_activation=pre,
            activation=layer.activation,
            computed=float(ACTIVATIONS[layer.activation](pre)),
        )
    elif layer.kind in ("pool", "avgpool"):
        window = _patch(x, r0, r1, c0, c1)[:, :, channel]  # (K, K)
        done["patch"] = window.tolist()
        if layer.kind == "pool":
            at = np.unravel_index(int(np.argmax(window)), window.shape)
            done.update(computed=float(window.max()), argmax=[int(at[0]), int(at[1])])
        else:
            done["computed"] = float(window.mean())
    elif layer.kind == "batchnorm":
        get = lambda part: float(weights[f"{layer.name}.{part}"][channel])  # noqa: E731
        mean, var, gamma, beta = (
            get(p) for p in ("moving_mean", "moving_variance", "gamma", "beta")
        )
        v = float(x[row, col, channel])
        done.update(
            input=v,
            mean=mean,
            variance=var,
            epsilon=layer.epsilon,
            gamma=gamma,
            beta=beta,
            computed=gamma * (v - mean) / np.sqrt(var + layer.epsilon) + beta,
        )
    elif layer.kind == "add":
        a = float(x[row, col, channel])
        b = float(outputs[layer.inputs[1]][row, col, channel])
        done.update(a=a, b=b, inputs=list(layer.inputs), computed=a + b)
    else:
        raise ValueError(f"{layer.name} is a {layer.kind} layer: not a map the view explains")
    done["difference"] = value - done["computed"]
    return done
