"""Where two frameworks part: every recorded quantity compared, in the order the computation
runs, and the first one past its tolerance named.

For each step ``k`` (0-based: step 0 runs on the first batch at the shared weights): the
forward pass layer by layer (``forward/<layer>``), then the backward pass from the last layer
to the first (for each layer its weight gradients ``grad/<tensor>`` and the gradient with
respect to its input ``grad_input/<layer>``), then the running statistics that step's
training forward pass left in each batchnorm (``statistics/<tensor>`` at step ``k``), then the
update that step makes, numbered by the updates done (``update/<tensor>`` at step ``k + 1``:
the first update is step 1's). The forward pass is recorded in evaluation mode, so a
batchnorm's forward at step ``k >= 1`` reads the statistics of the steps before it.

A fault shows first where it is made: a wrong flatten order in the first dense layer's
forward at step 0, a wrong 'same' placement in that convolution's forward at step 0, another
Adam epsilon in the update of step 1 with forward and backward in agreement, the other
running-average convention of a batchnorm in that layer's running-statistics update at step 0,
a residual joined to the wrong layer in that ``add``'s forward at step 0.

Metrics are relative, so one tolerance serves every layer's scale: forward outputs by
``max |a - b| / max |b|``, gradients and updates by ``||a - b|| / ||b||`` (a single entry that a
float32 max-pooling near-tie routes the other way moves a norm little, where it would move a
maximum a lot).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cnn_common.spec import ModelSpec, layers

# The stages of one optimiser step that parity compares (a step's timed phases, data, forward,
# backward and optimiser, are ``cnn_common.phases``'); a ``Row`` and parity.json name its
# stage ``phase``, as stored results already do.
STAGES = ("forward", "backward", "statistics", "update")
# dtype -> stage -> tolerance. float32: each framework's kernels round differently (about 1e-7
# a step) and the drift grows with every update; float64 leaves only the order of summation.
TOLERANCES: dict[str, dict[str, float]] = {
    "float32": {"forward": 1e-4, "backward": 1e-3, "statistics": 1e-4, "update": 1e-3},
    "float64": {"forward": 1e-9, "backward": 1e-9, "statistics": 1e-9, "update": 1e-9},
}
_KEY = re.compile(r"step(\d+)/(forward|grad_input|grad|statistics|update)/(.+)")


@dataclass(frozen=True)
class Row:
    """One quantity of one step compared between a pair of frameworks."""

    pair: str
    step: int
    phase: str  # the stage (STAGES): forward | backward | statistics | update
    quantity: str  # forward | grad_input | grad | statistics | update
    name: str  # the layer (forward, grad_input) or the tensor (grad, update)
    layer: str
    value: float  # the relative difference
    max_abs: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.value <= self.tolerance

    def where(self) -> str:
        """``step 0, forward of dense1``, ``step 1, update of conv1.kernel``, ..."""
        what = {
            "forward": f"forward of {self.name}",
            "grad_input": f"backward: gradient of {self.layer}'s input",
            "grad": f"backward: gradient of {self.name}",
            "statistics": f"running-statistics update of {self.layer} ({self.name})",
            "update": f"update of {self.name}",
        }[self.quantity]
        return f"step {self.step}, {what}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok, "where": self.where()}


def relative_difference(a: np.ndarray, b: np.ndarray, norm: bool) -> tuple[float, float]:
    """``(relative difference, max |a - b|)`` in float64: by the norm, or by the maximum."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if not a64.size:
        return 0.0, 0.0
    diff = a64 - b64
    max_abs = float(np.max(np.abs(diff)))
    scale = float(np.linalg.norm(b64) if norm else np.max(np.abs(b64)))
    value = float(np.linalg.norm(diff)) if norm else max_abs
    return (value / scale if scale > 0 else value), max_abs


def order_of(spec: ModelSpec) -> dict[tuple[str, str], int]:
    """(quantity, name) -> its place within a step, in the order the computation runs."""
    names = [layer.name for layer in layers(spec)]
    order: list[tuple[str, str]] = [("forward", name) for name in names]
    for layer in reversed(layers(spec)):
        order += [("grad", tensor) for tensor in layer.params]
        order.append(("grad_input", layer.name))
    order += [("statistics", tensor) for layer in layers(spec) for tensor in layer.state]
    order += [("update", tensor) for layer in layers(spec) for tensor in layer.params]
    return {key: i for i, key in enumerate(order)}


def compare_records(
    recorded: dict[str, dict[str, np.ndarray]], spec: ModelSpec, dtype: str
) -> list[Row]:
    """Every pair of frameworks, every step and quantity, in computation order."""
    tolerances = TOLERANCES[dtype]
    order = order_of(spec)
    owner = {tensor: layer.name for layer in layers(spec) for tensor in layer.tensors}
    rows = []
    for a, b in itertools.combinations(recorded, 2):
        keys = []
        for key in recorded[a]:
            match = _KEY.fullmatch(key)
            if match and key in recorded[b]:
                step, quantity, name = int(match[1]), match[2], match[3]
                # update k (w_k - w0) comes from batch k-1's gradients: after that backward
                runs_after = step - 1 if quantity == "update" else step
                keys.append((runs_after, order[(quantity, name)], step, quantity, name, key))
        keys.sort()
        for _, _, step, quantity, name, key in keys:
            stage = quantity if quantity in STAGES else "backward"
            value, max_abs = relative_difference(
                recorded[a][key], recorded[b][key], norm=stage != "forward"
            )
            layer = owner.get(name, name)
            rows.append(
                Row(f"{a} vs {b}", step, stage, quantity, name, layer, value, max_abs,
                    tolerances[stage])
            )  # fmt: skip
    return rows


def first_departures(rows: list[Row]) -> dict[str, Row | None]:
    """pair -> the first row past its tolerance (rows are in computation order), or None."""
    firsts: dict[str, Row | None] = {}
    for row in rows:
        firsts.setdefault(row.pair, None)
        if firsts[row.pair] is None and not row.ok:
            firsts[row.pair] = row
    return firsts


# dtype -> the relative gap under which two inputs of one pooling window are a near-tie: a few
# hundred times the rounding of one multiply-add chain, far below any real difference.
NEAR_TIE = {"float32": 1e-5, "float64": 1e-12}


def near_tie_pools(
    a: dict[str, np.ndarray],
    b: dict[str, np.ndarray],
    spec: ModelSpec,
    step: int,
    dtype: str = "float32",
) -> list[str]:
    """Pooling layers where, at ``step``, the two frameworks routed some of the gradient to
    another pixel of a window only because the window held a near-tie.

    A max-pooling window sends its gradient to its largest input. Where two inputs are equal
    up to rounding (closer than ``NEAR_TIE[dtype]``), kernels that round differently pick
    different pixels; both are right. Such a layer's input gradients differ only in windows
    whose two largest inputs (in ``a``'s forward pass) are a near-tie, and in which the
    window's gradient is the same, only sent elsewhere (its sum agrees).
    """
    found = []
    all_layers = layers(spec)
    for pool in all_layers:
        key = f"step{step}/grad_input/{pool.name}"
        if pool.kind != "pool" or pool.stride != pool.kernel_size or key not in a or key not in b:
            continue
        inputs = f"step{step}/forward/{pool.inputs[0]}"  # the image is not recorded
        if inputs not in a:
            continue
        # where the gradient went elsewhere (not rounding): (M, 4) indices n, h, w, c
        gap = np.abs(a[key].astype(np.float64) - b[key])
        differ = np.argwhere(gap > 1e-3 * max(float(np.abs(b[key]).max()), 1e-30))
        if not len(differ):
            continue
        values = a[inputs]  # (N, H, W, C): the pool's input
        size = pool.kernel_size
        ties = True
        for n, h, w, c in differ:
            top, left = h // size * size, w // size * size
            rows, cols = slice(top, top + size), slice(left, left + size)
            window = np.sort(values[n, rows, cols, c].ravel())
            scale = max(abs(float(window[-1])), 1e-30)
            sent_a, sent_b = (
                float(a[key][n, rows, cols, c].sum()),
                float(b[key][n, rows, cols, c].sum()),
            )
            same_sum = abs(sent_a - sent_b) <= 1e-3 * max(abs(sent_a), abs(sent_b), 1e-30)
            near = (
                (window[-1] - window[-2]) / scale <= NEAR_TIE[dtype] if len(window) > 1 else False
            )
            if not near or not same_sum:
                ties = False
                break
        if ties:
            found.append(pool.name)
    return found
