"""The layer-list kinds' operations (numpy_cnn.grouped, norm, pooling's average pooling,
ops.add): each fast one against its plain-loop twin in float64, and batchnorm's running
update in both conventions and both variance storages against numbers worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from cnn_common.spec import same_padding
from numpy_cnn import grouped, norm, ops, pooling

TIGHT = {"rtol": 1e-12, "atol": 1e-12}


# (N, H, C, F, K, groups, stride, padding, bias)
GROUPED_CASES = [
    (2, 6, 4, 6, 3, 2, 1, "same", True),  # 2 channels and 3 filters a group
    (2, 7, 5, 5, 3, 5, 2, "same", False),  # depthwise, stride 2, odd pad last, no bias
    (1, 6, 3, 6, 3, 3, 1, "valid", True),  # depthwise with two filters per channel
    (2, 5, 8, 4, 1, 4, 1, "valid", False),  # 1x1, C*KW < 16: im2col's transposed copy
    (2, 6, 16, 16, 3, 16, 1, "same", False),  # depthwise as MobileNet's: C*KW >= 16
]


GROUPED_FIELDS = ("n", "h", "c", "f", "k", "groups", "stride", "padding", "bias")


@pytest.mark.parametrize(GROUPED_FIELDS, GROUPED_CASES)
def test_grouped_conv_matches_naive(n, h, c, f, k, groups, stride, padding, bias) -> None:
    rng = np.random.default_rng(c * 7 + f)
    x = rng.normal(size=(n, h, h, c))
    w = rng.normal(size=(k, k, c // groups, f))
    b = rng.normal(size=f) if bias else None
    pad = (same_padding(h, k, stride),) * 2 if padding == "same" else ops.NO_PAD
    out, cache = grouped.grouped_conv_forward(x, w, b, stride, pad, groups)
    np.testing.assert_allclose(
        out, grouped.grouped_conv_naive(x, w, b, stride, pad, groups), **TIGHT
    )
    dout = rng.normal(size=out.shape)
    dx, dw, db = grouped.grouped_conv_backward(dout, cache)
    ndx, ndw, ndb = grouped.grouped_conv_backward_naive(dout, x, w, stride, pad, groups)
    for fast, naive in ((dx, ndx), (dw, ndw), (db, ndb)):
        np.testing.assert_allclose(fast, naive, **TIGHT)
    assert grouped.grouped_conv_backward(dout, cache, need_dx=False)[0] is None


def test_one_group_is_the_plain_convolution() -> None:
    rng = np.random.default_rng(3)
    x, w, b = rng.normal(size=(2, 6, 6, 3)), rng.normal(size=(3, 3, 3, 4)), rng.normal(size=4)
    out, _ = grouped.grouped_conv_forward(x, w, b, 1, ops.NO_PAD, 1)
    np.testing.assert_allclose(out, ops.conv2d_forward(x, w, b)[0], **TIGHT)


@pytest.mark.parametrize("shape", [(2, 3, 4, 3), (5, 1, 1, 2), (1, 6, 5, 4)])
def test_batchnorm_training_mode_matches_naive(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(sum(shape))
    x = rng.normal(2.0, 3.0, size=shape)
    gamma, beta = rng.normal(1.0, 0.3, size=shape[-1]), rng.normal(size=shape[-1])
    out, cache = norm.batchnorm_forward(x, gamma, beta, 1e-3)
    expected, mean, var = norm.batchnorm_naive(x, gamma, beta, 1e-3)
    np.testing.assert_allclose(out, expected, **TIGHT)
    np.testing.assert_allclose(cache.mean, mean, **TIGHT)
    np.testing.assert_allclose(cache.var, var, **TIGHT)  # biased
    assert cache.batch
    dout = rng.normal(size=shape)
    for fast, naive in zip(
        norm.batchnorm_backward(dout, cache),
        norm.batchnorm_backward_naive(dout, x, gamma, 1e-3),
        strict=True,
    ):
        np.testing.assert_allclose(fast, naive, rtol=1e-10, atol=1e-10)


def test_batchnorm_evaluation_mode_uses_the_running_statistics() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 2, 2, 3))
    gamma, beta = rng.normal(size=3), rng.normal(size=3)
    running = (rng.normal(size=3), rng.uniform(0.5, 2.0, size=3))
    out, cache = norm.batchnorm_forward(x, gamma, beta, 1e-5, running)
    expected, mean, var = norm.batchnorm_naive(x, gamma, beta, 1e-5, running)
    np.testing.assert_allclose(out, expected, **TIGHT)
    assert not cache.batch
    np.testing.assert_array_equal(mean, running[0])
    dout = rng.normal(size=x.shape)
    dx, dgamma, dbeta = norm.batchnorm_backward(dout, cache)
    scale = gamma / np.sqrt(running[1] + 1e-5)
    np.testing.assert_allclose(dx, dout * scale, **TIGHT)
    xhat = (x - running[0]) / np.sqrt(running[1] + 1e-5)
    np.testing.assert_allclose(dgamma, (dout * xhat).sum(axis=(0, 1, 2)), **TIGHT)
    np.testing.assert_allclose(dbeta, dout.sum(axis=(0, 1, 2)), **TIGHT)
    with pytest.raises(ValueError, match="training-mode"):
        norm.running_update(running[0], running[1], cache, 0.1, "torch", "unbiased")


# Two channels of four values: [1, 2, 3, 6] (mean 3, biased variance 3.5, unbiased 14/3) and
# [0, 0, 0, 4] (mean 1, biased 3, unbiased 4); running mean (0.5, 0), variance (2, 1).
RUNNING_CASES = {
    ("torch", 0.1, "unbiased"): ([0.75, 0.1], [1.8 + 1.4 / 3, 1.3]),
    ("torch", 0.1, "biased"): ([0.75, 0.1], [2.15, 1.2]),
    ("keras", 0.99, "unbiased"): ([0.525, 0.01], [1.98 + 0.14 / 3, 1.03]),
    ("keras", 0.99, "biased"): ([0.525, 0.01], [2.015, 1.02]),
}


@pytest.mark.parametrize(("convention", "momentum", "variance"), list(RUNNING_CASES))
def test_running_update_by_hand(convention: str, momentum: float, variance: str) -> None:
    x = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [6.0, 4.0]]).reshape(1, 2, 2, 2)
    old_mean, old_var = np.array([0.5, 0.0]), np.array([2.0, 1.0])
    _, cache = norm.batchnorm_forward(x, np.ones(2), np.zeros(2), 1e-5)
    new_mean, new_var = norm.running_update(
        old_mean, old_var, cache, momentum, convention, variance
    )
    want_mean, want_var = RUNNING_CASES[convention, momentum, variance]
    np.testing.assert_allclose(new_mean, want_mean, rtol=1e-14)
    np.testing.assert_allclose(new_var, want_var, rtol=1e-14)
    naive = norm.running_update_naive(old_mean, old_var, x, momentum, convention, variance)
    np.testing.assert_allclose(naive, (want_mean, want_var), rtol=1e-14)


def test_unbiased_variance_of_one_value_is_refused() -> None:
    _, cache = norm.batchnorm_forward(np.ones((1, 1, 1, 2)), np.ones(2), np.zeros(2), 1e-5)
    with pytest.raises(ValueError, match="more than one value"):
        norm.running_update(np.zeros(2), np.ones(2), cache, 0.1, "torch", "unbiased")


def test_batchnorm_reuses_its_workspace() -> None:
    """A second training step of the same shape gets the same buffers: nothing large is
    allocated per step."""
    rng = np.random.default_rng(5)
    ws = ops.Workspace()
    x, dout = rng.normal(size=(4, 3, 3, 2)), rng.normal(size=(4, 3, 3, 2))
    first, cache = norm.batchnorm_forward(x, np.ones(2), np.zeros(2), 1e-5, ws=ws)
    dx1 = norm.batchnorm_backward(dout, cache, ws)[0]
    second, cache = norm.batchnorm_forward(x, np.ones(2), np.zeros(2), 1e-5, ws=ws)
    dx2 = norm.batchnorm_backward(dout, cache, ws)[0]
    assert np.shares_memory(first, second) and np.shares_memory(dx1, dx2)


@pytest.mark.parametrize(("h", "size", "stride"), [(6, 2, 2), (7, 2, 2), (7, 3, 2), (5, 2, 1)])
def test_avgpool_matches_naive(h: int, size: int, stride: int) -> None:
    rng = np.random.default_rng(h * size + stride)
    x = rng.normal(size=(2, h, h + 1, 3))
    ws = ops.Workspace()
    out, cache = pooling.avgpool_forward(x, size, stride, ws)
    np.testing.assert_allclose(out, pooling.avgpool_naive(x, size, stride), **TIGHT)
    dout = rng.normal(size=out.shape)
    dx = pooling.avgpool_backward(dout, cache, ws)
    np.testing.assert_allclose(dx, pooling.avgpool_backward_naive(dout, x, size, stride), **TIGHT)
    again = pooling.avgpool_backward(dout, pooling.avgpool_forward(x, size, stride, ws)[1], ws)
    assert np.shares_memory(dx, again)  # the workspace's buffer, reused


def test_global_avgpool_and_add_match_naive() -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(2, 3, 4, 5))
    out, cache = pooling.global_avgpool_forward(x)
    assert out.shape == (2, 5)
    np.testing.assert_allclose(out, pooling.global_avgpool_naive(x), **TIGHT)
    dout = rng.normal(size=out.shape)
    np.testing.assert_allclose(
        pooling.global_avgpool_backward(dout, cache),
        pooling.global_avgpool_backward_naive(dout, x),
        **TIGHT,
    )
    a, b = rng.normal(size=(2, 3, 3, 4)), rng.normal(size=(2, 3, 3, 4))
    np.testing.assert_array_equal(ops.add_forward(a, b), ops.add_naive(a, b))
    da, db = ops.add_backward(a)
    assert da is a and db is a
