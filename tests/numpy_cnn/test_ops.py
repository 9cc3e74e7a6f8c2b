"""numpy_cnn.ops: fast against naive, and every backward pass against finite differences
(float64, ``tests.reference.numeric_gradient``)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from cnn_common.spec import same_padding
from numpy_cnn import fused, ops, pooling
from tests.reference import numeric_gradient


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """Largest difference relative to the largest gradient: ``max|a - b| / max(|a|, |b|)``.

    Scaled by the tensor's largest value rather than elementwise, so that gradients that are
    exactly zero (pixels no window reads) against finite-difference noise of 1e-11 do not
    count as errors of 100%.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(b))), 1e-12)
    return float(np.max(np.abs(a - b))) / scale


def numeric_grad(f: Callable[[], float], x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Central differences of ``f`` for every element of ``x`` (float64), shaped like ``x``:
    ``tests.reference.numeric_gradient`` over all of ``x``'s indices."""
    return numeric_gradient(f, x, list(np.ndindex(x.shape)), h).reshape(x.shape)


def away_from_zero(x: np.ndarray) -> np.ndarray:
    """Values at least 0.1 from 0, so the ReLU kink is never inside a finite difference."""
    return np.sign(x) * (0.1 + np.abs(x))


# (N, H, W, C, KH, F, stride, padding)
CONV_CASES = [
    (2, 7, 7, 1, 3, 2, 1, "valid"),
    (2, 8, 6, 3, 3, 4, 2, "valid"),
    (1, 9, 9, 2, 5, 3, 1, "same"),
    (3, 6, 7, 2, 2, 3, 2, "same"),  # even kernel: asymmetric padding, extra pixel last
    (2, 10, 10, 4, 4, 2, 3, "same"),
    (1, 5, 5, 3, 5, 2, 1, "valid"),  # kernel as large as the input
    (2, 11, 8, 5, 1, 3, 2, "valid"),  # 1x1 kernel
]


def conv_pad(h: int, w: int, k: int, stride: int, padding: str) -> ops.Pad:
    if padding == "valid":
        return ops.NO_PAD
    return same_padding(h, k, stride), same_padding(w, k, stride)


@pytest.mark.parametrize(("n", "h", "w", "c", "k", "f", "stride", "padding"), CONV_CASES)
def test_conv_fast_matches_naive(n, h, w, c, k, f, stride, padding) -> None:
    rng = np.random.default_rng(h * 31 + w * 7 + k)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    wt = rng.standard_normal((k, k, c, f)).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32)
    pad = conv_pad(h, w, k, stride, padding)
    out, cache = ops.conv2d_forward(x, wt, b, stride, pad)
    expected = ops.conv2d_naive(x, wt, b, stride, pad)
    assert out.shape == expected.shape
    if padding == "same":
        assert out.shape[1:3] == (-(-h // stride), -(-w // stride))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    dx, dw, db = ops.conv2d_backward(dout, cache)
    ndx, ndw, ndb = ops.conv2d_backward_naive(dout, x, wt, stride, pad)
    np.testing.assert_allclose(dx, ndx, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw, ndw, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(db, ndb, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("n", "h", "w", "c", "k", "f", "stride", "padding"), CONV_CASES)
def test_conv_gradient_check(n, h, w, c, k, f, stride, padding) -> None:
    rng = np.random.default_rng(k * 13 + h)
    x = rng.standard_normal((n, h, w, c))
    wt = rng.standard_normal((k, k, c, f))
    b = rng.standard_normal(f)
    pad = conv_pad(h, w, k, stride, padding)
    out, cache = ops.conv2d_forward(x, wt, b, stride, pad)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = ops.conv2d_backward(dout, cache)

    def loss() -> float:
        return float(np.sum(ops.conv2d_forward(x, wt, b, stride, pad)[0] * dout))

    assert rel_error(dx, numeric_grad(loss, x)) < 1e-6
    assert rel_error(dw, numeric_grad(loss, wt)) < 1e-6
    assert rel_error(db, numeric_grad(loss, b)) < 1e-6


def test_conv_first_layer_skips_input_gradient() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 6, 1)).astype(np.float32)
    wt = rng.standard_normal((3, 3, 1, 2)).astype(np.float32)
    out, cache = ops.conv2d_forward(x, wt, np.zeros(2, np.float32))
    dx, dw, _ = ops.conv2d_backward(np.ones_like(out), cache, need_dx=False)
    assert dx is None
    assert dw.shape == wt.shape


# (N, H, W, C, size, stride)
POOL_CASES = [
    (2, 8, 8, 3, 2, 2),
    (2, 7, 9, 2, 2, 2),  # odd sizes: the last row/column is dropped
    (1, 9, 9, 2, 3, 2),  # overlapping windows
    (2, 8, 8, 1, 2, 3),  # gaps between windows
    (1, 6, 6, 4, 3, 3),
    (2, 5, 5, 2, 1, 1),
]


@pytest.mark.parametrize(("n", "h", "w", "c", "size", "stride"), POOL_CASES)
def test_maxpool_fast_matches_naive(n, h, w, c, size, stride) -> None:
    rng = np.random.default_rng(h * size + stride)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    out, cache = pooling.maxpool_forward(x, size, stride)
    np.testing.assert_array_equal(out, pooling.maxpool_naive(x, size, stride))
    dout = rng.standard_normal(out.shape).astype(np.float32)
    np.testing.assert_allclose(
        pooling.maxpool_backward(dout, cache),
        pooling.maxpool_backward_naive(dout, x, size, stride),
        rtol=1e-6,
        atol=1e-6,
    )


@pytest.mark.parametrize(("n", "h", "w", "c", "size", "stride"), POOL_CASES)
def test_maxpool_gradient_check(n, h, w, c, size, stride) -> None:
    rng = np.random.default_rng(size * 17 + h)
    # A permutation keeps every value at least 1 apart: no tie comes near a finite difference.
    x = rng.permutation(n * h * w * c).reshape(n, h, w, c).astype(np.float64)
    out, cache = pooling.maxpool_forward(x, size, stride)
    dout = rng.standard_normal(out.shape)
    dx = pooling.maxpool_backward(dout, cache)

    def loss() -> float:
        return float(np.sum(pooling.maxpool_forward(x, size, stride)[0] * dout))

    assert rel_error(dx, numeric_grad(loss, x)) < 1e-6


def test_maxpool_ties_go_to_the_first_maximum() -> None:
    # Blank image regions give equal values in a window: the gradient must reach one pixel,
    # the first in row-major order (as PyTorch and TensorFlow route it), not all of them.
    x = np.zeros((1, 4, 4, 1), dtype=np.float32)
    x[0, 2:, 2:, 0] = [[1.0, 3.0], [3.0, 3.0]]
    out, cache = pooling.maxpool_forward(x, 2, 2)
    dx = pooling.maxpool_backward(np.ones_like(out), cache)
    expected = np.zeros((4, 4), dtype=np.float32)
    expected[0, 0] = expected[0, 2] = expected[2, 0] = expected[2, 3] = 1.0
    np.testing.assert_array_equal(dx[0, :, :, 0], expected)


# (N, H, W, C, KH, F, stride, padding, pool size)
CONV_POOL_CASES = [
    (2, 28, 28, 1, 5, 4, 1, "valid", 2),  # the seed model's first layer: few channels
    (2, 12, 12, 16, 5, 3, 1, "valid", 2),  # its second: a strided copy per kernel row
    (2, 9, 9, 2, 3, 3, 1, "valid", 2),  # 7x7 maps: the last row and column unpooled
    (1, 10, 11, 3, 3, 2, 2, "same", 2),  # strided 'same' convolution, then pooling
    (2, 9, 9, 2, 2, 2, 1, "valid", 3),  # 3x3 windows
]


@pytest.mark.parametrize(
    ("n", "h", "w", "c", "k", "f", "stride", "padding", "size"), CONV_POOL_CASES
)
def test_conv_pool_matches_conv_then_pool(n, h, w, c, k, f, stride, padding, size) -> None:
    """The fused operation is the composition of the two naive ones, forward and backward."""
    rng = np.random.default_rng(h * 7 + c * 3 + size)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    wt = rng.standard_normal((k, k, c, f)).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32)
    pad = conv_pad(h, w, k, stride, padding)
    out, cache = fused.conv_pool_forward(x, wt, b, stride, pad, size)
    conv = ops.conv2d_naive(x, wt, b, stride, pad)
    np.testing.assert_allclose(out, pooling.maxpool_naive(conv, size, size), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(  # the same window offsets win as in the plain pooling
        fused.conv_pool_winners(cache),
        pooling.maxpool_winners(pooling.maxpool_forward(conv, size, size)[1]),
    )
    dout = rng.standard_normal(out.shape).astype(np.float32)
    dx, dw, db = fused.conv_pool_backward(dout, cache)
    dconv = pooling.maxpool_backward_naive(dout, conv, size, size)
    ndx, ndw, ndb = ops.conv2d_backward_naive(dconv, x, wt, stride, pad)
    np.testing.assert_allclose(dx, ndx, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dw, ndw, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(db, ndb, rtol=1e-4, atol=1e-4)
    assert fused.conv_pool_backward(dout, cache, need_dx=False)[0] is None


def test_conv_pool_ties_go_to_the_first_maximum() -> None:
    # A blank image gives every output pixel the bias: each window's gradient reaches one pixel.
    x = np.zeros((1, 6, 6, 1), dtype=np.float32)
    wt = np.ones((3, 3, 1, 1), dtype=np.float32)
    out, cache = fused.conv_pool_forward(x, wt, np.full(1, 0.5, np.float32), 1, ops.NO_PAD, 2)
    np.testing.assert_array_equal(out, np.full((1, 2, 2, 1), 0.5, np.float32))
    assert (fused.conv_pool_winners(cache) == 0).all()
    _, _, db = fused.conv_pool_backward(np.ones_like(out), cache)
    np.testing.assert_array_equal(db, [4.0])  # four windows, one pixel each


@pytest.mark.parametrize("kind", ["relu", "tanh", "sigmoid", "linear"])
@pytest.mark.parametrize("shape", [(3, 5), (2, 4, 4, 3)])
def test_activation_matches_naive_and_gradient(kind: str, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(len(shape))
    x = away_from_zero(rng.standard_normal(shape))
    out, cache = ops.activation_forward(x.astype(np.float32), kind)
    np.testing.assert_allclose(out, ops.activation_naive(x.astype(np.float32), kind), rtol=1e-6)
    dout = rng.standard_normal(shape)
    dx = ops.activation_backward(dout, ops.activation_forward(x, kind)[1])

    def loss() -> float:
        return float(np.sum(ops.activation_forward(x, kind)[0] * dout))

    assert rel_error(dx, numeric_grad(loss, x)) < 1e-6


def test_sigmoid_is_stable_at_large_inputs() -> None:
    out, _ = ops.activation_forward(np.array([-1e4, -50.0, 0.0, 50.0, 1e4], np.float32), "sigmoid")
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-7)


@pytest.mark.parametrize(("n", "d", "u"), [(1, 3, 2), (4, 7, 5), (6, 20, 10)])
def test_dense_matches_naive_and_gradient(n: int, d: int, u: int) -> None:
    rng = np.random.default_rng(d)
    x, w, b = rng.standard_normal((n, d)), rng.standard_normal((d, u)), rng.standard_normal(u)
    out, cache = ops.dense_forward(x.astype(np.float32), w.astype(np.float32), b.astype(np.float32))
    naive = ops.dense_naive(x.astype(np.float32), w.astype(np.float32), b.astype(np.float32))
    np.testing.assert_allclose(out, naive, rtol=1e-5, atol=1e-5)
    dout = rng.standard_normal((n, u))
    dx, dw, db = ops.dense_backward(dout, ops.dense_forward(x, w, b)[1])

    def loss() -> float:
        return float(np.sum(ops.dense_forward(x, w, b)[0] * dout))

    assert rel_error(dx, numeric_grad(loss, x)) < 1e-6
    assert rel_error(dw, numeric_grad(loss, w)) < 1e-6
    assert rel_error(db, numeric_grad(loss, b)) < 1e-6


@pytest.mark.parametrize("rate", [0.25, 0.5])
def test_dropout_mask_scale_and_gradient(rate: float) -> None:
    x = np.random.default_rng(1).standard_normal((200, 50))
    out, cache = ops.dropout_forward(x, rate, np.random.default_rng(7))
    kept = out != 0
    assert abs(1 - kept.mean() - rate) < 0.02
    np.testing.assert_allclose(out[kept], x[kept] / (1 - rate))
    dout = np.random.default_rng(2).standard_normal(x.shape)
    np.testing.assert_allclose(ops.dropout_backward(dout, cache), dout * (out / x), rtol=1e-12)
    small, dsmall = x[:6, :8].copy(), dout[:6, :8]
    _, small_cache = ops.dropout_forward(small, rate, np.random.default_rng(7))

    def loss() -> float:
        # The same generator seed gives the same mask: dropout is then a fixed linear map.
        return float(np.sum(ops.dropout_forward(small, rate, np.random.default_rng(7))[0] * dsmall))

    numeric = numeric_grad(loss, small)
    assert rel_error(ops.dropout_backward(dsmall, small_cache), numeric) < 1e-6
    eval_out, _ = ops.dropout_forward(x, rate, None)
    assert eval_out is x


@pytest.mark.parametrize(("n", "k"), [(1, 2), (5, 10), (16, 3)])
def test_softmax_cross_entropy_matches_naive_and_gradient(n: int, k: int) -> None:
    rng = np.random.default_rng(n + k)
    logits = rng.standard_normal((n, k))
    y = rng.integers(0, k, n)
    loss, dlogits = ops.softmax_cross_entropy(logits, y)
    assert abs(loss - ops.softmax_cross_entropy_naive(logits, y)) < 1e-12
    numeric = numeric_grad(lambda: ops.softmax_cross_entropy(logits, y)[0], logits)
    assert rel_error(dlogits, numeric) < 1e-6


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_is_stable_at_huge_logits(dtype: type) -> None:
    logits = np.array([[1e4, 0.0, -1e4], [1e4, 1e4, 0.0], [-1e4, -1e4, -1e4]], dtype=dtype)
    y = np.array([0, 0, 2])
    loss, dlogits = ops.softmax_cross_entropy(logits, y)
    assert np.isfinite(loss)
    assert np.all(np.isfinite(dlogits))
    # Row losses: 0, log 2, log 3.
    np.testing.assert_allclose(loss, (0 + np.log(2) + np.log(3)) / 3, rtol=1e-6)
    np.testing.assert_allclose(ops.softmax(logits).sum(axis=1), 1.0, rtol=1e-6)
