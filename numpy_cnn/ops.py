"""The layers as forward/backward pairs of free functions, each beside its plain-loop twin.

Every fast operation is vectorised: im2col built with one slice copy per kernel offset, then a
single BLAS GEMM; no Python loop over images, pixels or channels. (Training and inference run
a convolution and the max-pooling that tiles its output as one operation: ``numpy_cnn.fused``.)
The ``*_naive`` functions
spell out the textbook formula with explicit loops; they are slow and exist to be read and to
check the fast ones against.

Conventions: ``x`` is the layer input, ``out`` its output, ``dout`` the gradient of the loss
with respect to ``out``, and ``dx``, ``dw``, ``db`` the gradients the backward pass returns.
Images are NHWC; conv kernels ``(KH, KW, C, F)``; dense kernels ``(D, U)`` (in, out).
A padding ``pad`` is ``((top, bottom), (left, right))`` zeros, as ``cnn_common.spec.Layer.pad``.

Each forward returns ``(out, cache)``; the cache is a small named type of that operation
(``ConvCache``, ``ActivationCache``, ``DenseCache``, ``DropoutCache``), what its backward reads,
by field name (``add`` needs none). The caches hold references to arrays the forward made
anyway: no copies. Beside this module: ``pooling`` (max- and average pooling), ``grouped``
(grouped and depthwise convolution), ``norm`` (batch normalisation).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from cnn_common.spec import conv_output_size

Pad = tuple[tuple[int, int], tuple[int, int]]
NO_PAD: Pad = ((0, 0), (0, 0))


class Workspace:
    """Reusable scratch arrays keyed by role, shape and dtype.

    Training calls the same layer with the same batch shape hundreds of times; handing back the
    same buffer avoids allocating (and page-faulting) tens of megabytes per step. A buffer is
    reused only by the next call with the same key, which comes after the backward pass that
    read it.
    """

    def __init__(self) -> None:
        self._arrays: dict[tuple[Any, ...], np.ndarray] = {}

    def get(self, key: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An uninitialised array of ``shape`` and ``dtype`` owned by ``key``."""
        full = (key, shape, np.dtype(dtype).str)
        arr = self._arrays.get(full)
        if arr is None:
            arr = self._arrays[full] = np.empty(shape, dtype=dtype)
        return arr


def _empty(ws: Workspace | None, key: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return ws.get(key, shape, dtype) if ws is not None else np.empty(shape, dtype=dtype)


# ----------------------------------------------------------------------------- convolution


def pad_images(x: np.ndarray, pad: Pad) -> np.ndarray:
    """Zero-pad the spatial axes: ``(N, H, W, C) -> (N, H+top+bottom, W+left+right, C)``."""
    if pad == NO_PAD:
        return x
    return np.pad(x, ((0, 0), pad[0], pad[1], (0, 0)))


def im2col(
    x: np.ndarray,
    kh: int,
    kw: int,
    stride: int,
    pad: Pad,
    ws: Workspace | None = None,
    bias_column: bool = False,
) -> np.ndarray:
    """Every receptive field as a row: ``(N, H, W, C) -> cols (N*Ho*Wo, KH*KW*C)``.

    Row ``(n, i, j)`` holds the window whose top-left corner is padded pixel
    ``(i*stride, j*stride)``, in ``(KH, KW, C)`` order, so ``cols @ w.reshape(-1, F)`` is the
    convolution. With ``bias_column`` every row ends with one more value, 1, so that the bias
    rides in the same matrix product as the kernel (``cols @ [w; b]``) and its gradient in the
    same product as the kernel's: ``(N*Ho*Wo, KH*KW*C + 1)``. Two ways to fill it, both
    copying long contiguous runs:

    - many channels: one copy per kernel row, each window row being a contiguous run of
      ``KW*C`` values in NHWC;
    - few channels (an image's first layer): one copy per kernel offset into the transposed
      matrix ``(KH*KW*C, N*Ho*Wo)``, returned as its transposed view; BLAS reads either.
    """
    n, h, w, c = x.shape
    ho = conv_output_size(h, kh, stride, sum(pad[0]))
    wo = conv_output_size(w, kw, stride, sum(pad[1]))
    xp = np.ascontiguousarray(pad_images(x, pad))  # (N, Hp, Wp, C)
    row_span = stride * (ho - 1) + 1
    k, extra = kh * kw * c, int(bias_column)
    if c * kw < 16:
        cols_t = _empty(ws, "cols_t", (k + extra, n * ho * wo), x.dtype)
        patches = cols_t[:k].reshape(kh, kw, c, n, ho, wo)
        for i in range(kh):
            for j in range(kw):
                window = xp[:, i : i + row_span : stride, j : j + stride * (wo - 1) + 1 : stride]
                patches[i, j] = window.transpose(3, 0, 1, 2)  # (C, N, Ho, Wo)
        if bias_column:
            cols_t[k] = 1
        return cols_t.T  # (N*Ho*Wo, KH*KW*C [+ 1]) view
    cols = _empty(ws, "cols", (n, ho, wo, k + extra), x.dtype)
    patches = cols[..., :k].reshape(n, ho, wo, kh, kw * c)  # a view: the last axis split
    sn, sh, sw, sc = xp.strides
    for i in range(kh):
        # (N, Ho, Wo, KW*C): window row i of every output pixel, read in place.
        rows = as_strided(
            xp[:, i:], shape=(n, ho, wo, kw * c), strides=(sn, sh * stride, sw * stride, sc)
        )
        patches[:, :, :, i, :] = rows
    if bias_column:
        cols[..., k] = 1
    return cols.reshape(n * ho * wo, k + extra)


def col2im(
    dout: np.ndarray,
    w: np.ndarray,
    x_shape: tuple[int, ...],
    stride: int,
    pad: Pad,
    ws: Workspace | None = None,
) -> np.ndarray:
    """The input gradient of a convolution: ``dcols = dout @ w^T`` summed back onto pixels.

    ``dout (N*Ho*Wo, F)``, ``w (KH, KW, C, F)`` -> ``dx (N, H, W, C)``. The GEMM is done per
    kernel offset (one batched matmul) so each offset's ``(N, Ho, Wo, C)`` block is contiguous
    and adds onto its strided slice of the padded input in one vectorised operation; pixels
    shared by overlapping windows receive the sum of their contributions.
    """
    n, h, wd, c = x_shape
    kh, kw, _, f = w.shape
    (top, bottom), (left, right) = pad
    ho = conv_output_size(h, kh, stride, top + bottom)
    wo = conv_output_size(wd, kw, stride, left + right)
    w_t = np.ascontiguousarray(w.reshape(kh * kw, c, f).transpose(0, 2, 1))  # (KH*KW, F, C)
    dcols = _empty(ws, "dcols", (kh * kw, n * ho * wo, c), dout.dtype)
    np.matmul(dout[None], w_t, out=dcols)  # (KH*KW, N*Ho*Wo, C)
    dxp = _empty(ws, "dxp", (n, h + top + bottom, wd + left + right, c), dout.dtype)
    dxp.fill(0)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + stride * (ho - 1) + 1, stride)
            columns = slice(j, j + stride * (wo - 1) + 1, stride)
            dxp[:, rows, columns, :] += dcols[i * kw + j].reshape(n, ho, wo, c)
    return dxp[:, top : top + h, left : left + wd, :]


class ConvCache(NamedTuple):
    """What ``conv2d_backward`` needs from ``conv2d_forward``."""

    x_shape: tuple[int, ...]  # (N, H, W, C): the input's shape, for dx
    cols: np.ndarray  # (N*Ho*Wo, KH*KW*C + 1): im2col rows, a 1 last (the bias's input)
    w: np.ndarray  # (KH, KW, C, F)
    stride: int
    pad: Pad


def conv2d_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    stride: int = 1,
    pad: Pad = NO_PAD,
    ws: Workspace | None = None,
) -> tuple[np.ndarray, ConvCache]:
    """2-D cross-correlation (what deep learning calls convolution) with zero padding.

    ``out[n, i, j, f] = b[f] + sum_{p, q, c} xpad[n, i*s + p, j*s + q, c] * w[p, q, c, f]``

    Input shape: ``x (N, H, W, C)``, ``w (KH, KW, C, F)``, ``b (F,)``.
    Output shape: ``(N, Ho, Wo, F)`` with ``Ho = (H + top + bottom - KH) // s + 1``.
    """
    kh, kw, c, f = w.shape
    n, k = x.shape[0], kh * kw * c
    ho = conv_output_size(x.shape[1], kh, stride, sum(pad[0]))
    wo = conv_output_size(x.shape[2], kw, stride, sum(pad[1]))
    cols2 = im2col(x, kh, kw, stride, pad, ws, bias_column=True)  # (N*Ho*Wo, KH*KW*C + 1)
    wb = np.concatenate([w.reshape(k, f), b.reshape(1, f)])  # (KH*KW*C + 1, F): bias last
    out = _empty(ws, "conv_out", (n * ho * wo, f), x.dtype)
    np.dot(cols2, wb, out=out)  # (N*Ho*Wo, F): one product, bias included
    return out.reshape(n, ho, wo, f), ConvCache(x.shape, cols2, w, stride, pad)


def conv2d_backward(
    dout: np.ndarray, cache: ConvCache, need_dx: bool = True, ws: Workspace | None = None
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of ``conv2d_forward``: ``dout (N, Ho, Wo, F) -> dx (N, H, W, C), dw, db``.

    ``[dw; db] = cols^T @ dout`` (one GEMM: the last column of ``cols`` is the bias's input,
    1, so the last row of the product is the bias gradient, the sum of ``dout`` over pixels);
    ``col2im`` computes ``dcols = dout @ w^T`` and scatters it back onto the input.
    ``need_dx=False`` skips that half (the first layer's input needs no gradient).
    """
    w = cache.w
    n, ho, wo, f = dout.shape
    d2 = dout.reshape(n * ho * wo, f)  # (N*Ho*Wo, F)
    dwb = np.dot(cache.cols.T, d2)  # (KH*KW*C + 1, F)
    dw, db = dwb[:-1].reshape(w.shape), dwb[-1]  # (KH, KW, C, F), (F,)
    if not need_dx:
        return None, dw, db
    return col2im(d2, w, cache.x_shape, cache.stride, cache.pad, ws), dw, db


def conv2d_naive(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int = 1, pad: Pad = NO_PAD
) -> np.ndarray:
    """``conv2d_forward`` as the formula reads, one output value at a time.

    ``(N, H, W, C), (KH, KW, C, F), (F,) -> (N, Ho, Wo, F)``.
    """
    kh, kw, c, f = w.shape
    xp = pad_images(x, pad)
    n = x.shape[0]
    ho = conv_output_size(x.shape[1], kh, stride, sum(pad[0]))
    wo = conv_output_size(x.shape[2], kw, stride, sum(pad[1]))
    out = np.zeros((n, ho, wo, f), dtype=x.dtype)
    for img in range(n):
        for i in range(ho):
            for j in range(wo):
                for k in range(f):
                    total = b[k]
                    for p in range(kh):
                        for q in range(kw):
                            for ch in range(c):
                                total += (
                                    xp[img, i * stride + p, j * stride + q, ch] * w[p, q, ch, k]
                                )
                    out[img, i, j, k] = total
    return out


def conv2d_backward_naive(
    dout: np.ndarray, x: np.ndarray, w: np.ndarray, stride: int = 1, pad: Pad = NO_PAD
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The chain rule for ``conv2d_naive``, term by term: every output value sends
    ``dout * w`` to the pixel it read and ``dout * pixel`` to the weight that read it."""
    kh, kw, c, f = w.shape
    xp = pad_images(x, pad)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    db = np.zeros(f, dtype=w.dtype)
    n, ho, wo, _ = dout.shape
    for img in range(n):
        for i in range(ho):
            for j in range(wo):
                for k in range(f):
                    g = dout[img, i, j, k]
                    db[k] += g
                    for p in range(kh):
                        for q in range(kw):
                            for ch in range(c):
                                r, s = i * stride + p, j * stride + q
                                dw[p, q, ch, k] += g * xp[img, r, s, ch]
                                dxp[img, r, s, ch] += g * w[p, q, ch, k]
    (top, _), (left, _) = pad
    dx = dxp[:, top : top + x.shape[1], left : left + x.shape[2], :]
    return dx, dw, db


# ----------------------------------------------------------------------------- activations


class ActivationCache(NamedTuple):
    """What ``activation_backward`` needs: each derivative is cheapest written in terms of the
    output."""

    kind: str  # relu | tanh | sigmoid | linear
    out: np.ndarray  # the activation's output, any shape


def activation_forward(
    x: np.ndarray, kind: str, ws: Workspace | None = None
) -> tuple[np.ndarray, ActivationCache]:
    """``relu | tanh | sigmoid | linear`` elementwise, any shape. The cache is the output:
    each derivative is cheapest written in terms of it."""
    if kind == "relu":
        out = np.maximum(x, 0, out=_empty(ws, "relu", x.shape, x.dtype))
    elif kind == "tanh":
        out = np.tanh(x)
    elif kind == "sigmoid":
        # Split by sign so exp never overflows: 1/(1+e^-x) for x >= 0, e^x/(1+e^x) below.
        e = np.exp(-np.abs(x))
        out = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
    elif kind == "linear":
        out = x
    else:
        raise ValueError(f"unknown activation {kind!r}")
    return out, ActivationCache(kind, out)


def activation_backward(
    dout: np.ndarray, cache: ActivationCache, ws: Workspace | None = None
) -> np.ndarray:
    """``dx = dout * f'(x)`` with ``f'`` from the output: relu ``out > 0``, tanh ``1 - out^2``,
    sigmoid ``out (1 - out)``, linear 1. ``dout`` and ``dx`` have the output's shape."""
    kind, out = cache.kind, cache.out
    if kind == "relu":
        active = np.greater(out, 0, out=_empty(ws, "relu_active", out.shape, np.bool_))
        return np.multiply(dout, active, out=_empty(ws, "relu_dx", dout.shape, dout.dtype))
    if kind == "tanh":
        return dout * (1 - out * out)
    if kind == "sigmoid":
        return dout * out * (1 - out)
    return dout


def activation_naive(x: np.ndarray, kind: str) -> np.ndarray:
    """The activation one element at a time, from its definition."""
    flat = x.reshape(-1)
    out = np.empty_like(flat)
    for k, v in enumerate(flat):
        if kind == "relu":
            out[k] = v if v > 0 else 0
        elif kind == "tanh":
            out[k] = np.tanh(v)
        elif kind == "sigmoid":
            out[k] = 1 / (1 + np.exp(-v))
        else:
            out[k] = v
    return out.reshape(x.shape)


# ----------------------------------------------------------------------------- dense, dropout


class DenseCache(NamedTuple):
    """What ``dense_backward`` needs from ``dense_forward``."""

    x: np.ndarray  # (N, D)
    w: np.ndarray  # (D, U)


def dense_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, DenseCache]:
    """Fully connected layer ``out = x @ w + b``: ``(N, D), (D, U), (U,) -> (N, U)``."""
    return np.dot(x, w) + b, DenseCache(x, w)


def dense_backward(
    dout: np.ndarray, cache: DenseCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``dout (N, U) -> dx (N, D) = dout @ w^T, dw (D, U) = x^T @ dout, db (U,)``."""
    return np.dot(dout, cache.w.T), np.dot(cache.x.T, dout), dout.sum(axis=0)


def dense_naive(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``out[n, u] = b[u] + sum_d x[n, d] * w[d, u]``, one sum at a time."""
    n, d = x.shape
    out = np.zeros((n, w.shape[1]), dtype=x.dtype)
    for img in range(n):
        for u in range(w.shape[1]):
            total = b[u]
            for k in range(d):
                total += x[img, k] * w[k, u]
            out[img, u] = total
    return out


class DropoutCache(NamedTuple):
    """What ``dropout_backward`` needs from ``dropout_forward``."""

    mask: np.ndarray | None  # the input's shape: 0 or 1 / (1 - rate); None: identity


def dropout_forward(
    x: np.ndarray, rate: float, rng: np.random.Generator | None
) -> tuple[np.ndarray, DropoutCache]:
    """Inverted dropout: zero each value with probability ``rate``, scale the rest by
    ``1 / (1 - rate)`` so the expectation is unchanged. ``rng=None`` (evaluation): identity.
    Any shape in, same shape out."""
    if rng is None or rate == 0:
        return x, DropoutCache(None)
    keep = rng.random(x.shape) >= rate
    mask = keep.astype(x.dtype) / np.asarray(1 - rate, dtype=x.dtype)
    return x * mask, DropoutCache(mask)


def dropout_backward(dout: np.ndarray, cache: DropoutCache) -> np.ndarray:
    """The same mask and scale applied to the gradient: ``dout`` and ``dx`` of the input's
    shape."""
    return dout if cache.mask is None else dout * cache.mask


# ----------------------------------------------------------------------------- add


def add_forward(a: np.ndarray, b: np.ndarray, ws: Workspace | None = None) -> np.ndarray:
    """The join of a residual connection: ``a + b``, two arrays of one shape, into a reused
    buffer. Its backward needs no cache: the gradient of the sum reaches both inputs as it is
    (the network adds it to whatever else each input receives)."""
    return np.add(a, b, out=_empty(ws, "add_out", a.shape, a.dtype))


def add_backward(dout: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``d(a + b)/da = d(a + b)/db = 1``: ``dout`` is the gradient of both inputs, ``(da,
    db)`` of the output's shape (the same array twice: the caller adds, never writes)."""
    return dout, dout


def add_naive(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a + b`` one element at a time."""
    fa, fb = a.reshape(-1), b.reshape(-1)
    out = np.empty_like(fa)
    for k in range(fa.size):
        out[k] = fa[k] + fb[k]
    return out.reshape(a.shape)


# ----------------------------------------------------------------------------- loss


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """``logits - logsumexp(logits)`` per row, stable: the row maximum is subtracted first,
    so logits of 1e4 neither overflow nor give NaN. ``(N, K) -> (N, K)``."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities per row, stable: ``(N, K) -> (N, K)``, rows sum to 1."""
    return np.exp(log_softmax(logits))


def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(logits) against labels, and its gradient.

    ``logits (N, K)``, ``y (N,)`` int -> ``loss`` and ``dlogits (N, K) = (softmax - onehot)/N``.
    """
    n = logits.shape[0]
    logp = log_softmax(logits)  # (N, K)
    loss = -float(logp[np.arange(n), y].mean())
    dlogits = np.exp(logp)
    dlogits[np.arange(n), y] -= 1
    dlogits /= n
    return loss, dlogits


def softmax_cross_entropy_naive(logits: np.ndarray, y: np.ndarray) -> float:
    """The loss by its definition, one row at a time: ``-log(e^z_y / sum_k e^z_k)``, with the
    row maximum subtracted so it stays finite."""
    total = 0.0
    for row, label in zip(logits, y, strict=True):
        m = max(row)
        denom = sum(np.exp(v - m) for v in row)
        total += -((row[label] - m) - np.log(denom))
    return float(total / len(y))
