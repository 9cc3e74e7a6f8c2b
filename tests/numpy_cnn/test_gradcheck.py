"""numpy_cnn.gradcheck and ``numpy-cnn gradcheck``: every backward pass agrees with central
differences of its forward pass, and a wrong one is caught."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from numpy_cnn import gradcheck, ops

LAYERS = ("conv", "maxpool", "relu", "tanh", "sigmoid", "dense", "dropout", "softmax")


def test_every_layer_and_the_network_pass() -> None:
    checks = gradcheck.run_checks(seed=0, samples=10)
    cases = {check.case for check in checks}
    for layer in LAYERS:
        assert any(case.startswith(layer) for case in cases), layer
    network = {check.tensor for check in checks if check.case.startswith("network")}
    assert network == {
        "conv1.kernel", "conv1.bias", "conv2.kernel", "conv2.bias", "dense1.kernel",
        "dense1.bias", "logits.kernel", "logits.bias", "image",
    }  # fmt: skip
    for check in checks:
        assert check.ok, check
        assert check.checked > 0 and check.error <= gradcheck.TOLERANCE


def test_wrong_backward_passes_fail(monkeypatch) -> None:
    """Two classic slips: tanh' written ``1 - out`` and a dense bias gradient averaged over
    the batch instead of summed."""
    activation_backward, dense_backward = ops.activation_backward, ops.dense_backward

    def tanh_slip(dout: np.ndarray, cache: ops.ActivationCache, ws: object = None) -> np.ndarray:
        if cache.kind == "tanh":
            return dout * (1 - cache.out)
        return activation_backward(dout, cache, ws)

    def mean_bias(dout: np.ndarray, cache: ops.DenseCache) -> tuple[np.ndarray, ...]:
        dx, dw, _ = dense_backward(dout, cache)
        return dx, dw, dout.mean(axis=0)

    monkeypatch.setattr(ops, "activation_backward", tanh_slip)
    monkeypatch.setattr(ops, "dense_backward", mean_bias)
    checks = gradcheck.run_checks(seed=1, samples=5)
    failed = {(c.case.split()[0], c.tensor) for c in checks if not c.ok}
    assert failed == {
        ("tanh", "x"), ("dense", "b"), ("network", "dense1.bias"), ("network", "logits.bias"),
    }  # fmt: skip
    assert gradcheck.report(checks)[-1] == f"4 of {len(checks)} checks FAIL"


def test_relative_error() -> None:
    assert gradcheck.relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.002])) == (
        pytest.approx(1e-3, rel=1e-3)
    )
    # below FLOOR the difference is absolute; NaN (a kink crossed) is left out
    tiny = gradcheck.relative_error(np.array([1e-9, 5.0]), np.array([2e-9, np.nan]))
    assert tiny == pytest.approx(1e-9 / gradcheck.FLOOR)


def test_command_prints_and_exits_0() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "numpy_cnn", "gradcheck", "--samples", "3"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"tolerance {gradcheck.TOLERANCE:g}" in done.stdout
    assert "softmax cross-entropy" in done.stdout and "FAIL" not in done.stdout
    assert done.stdout.rstrip().endswith("checks PASS")
