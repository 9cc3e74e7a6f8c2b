"""The layers as forward/backward pairs of free functions, each beside its plain-loop twin.

Every fast operation is vectorised: im2col built with one slice copy per kernel offset, then a
single BLAS GEMM; no Python loop over images, pixels or channels. Training and inference run a
convolution and the max-pooling that tiles its output as one operation (``conv_pool_forward``:
im2col's rows in pooling order, so pooling reads whole blocks); the layer-by-layer functions
stay for every other layout, for the traces and for reading. The ``*_naive`` functions
spell out the textbook formula with explicit loops; they are slow and exist to be read and to
check the fast ones against.

Conventions: ``x`` is the layer input, ``out`` its output, ``dout`` the gradient of the loss
with respect to ``out``, and ``dx``, ``dw``, ``db`` the gradients the backward pass returns.
Images are NHWC; conv kernels ``(KH, KW, C, F)``; dense kernels ``(D, U)`` (in, out).
A padding ``pad`` is ``((top, bottom), (left, right))`` zeros, as ``cnn_common.spec.Layer.pad``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from cnn_common.spec import conv_output_size

Pad = tuple[tuple[int, int], tuple[int, int]]
Cache = tuple[Any, ...]
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


def conv2d_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    stride: int = 1,
    pad: Pad = NO_PAD,
    ws: Workspace | None = None,
) -> tuple[np.ndarray, Cache]:
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
    return out.reshape(n, ho, wo, f), (x.shape, cols2, w, stride, pad)


def conv2d_backward(
    dout: np.ndarray, cache: Cache, need_dx: bool = True, ws: Workspace | None = None
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of ``conv2d_forward``: ``dout (N, Ho, Wo, F) -> dx (N, H, W, C), dw, db``.

    ``[dw; db] = cols^T @ dout`` (one GEMM: the last column of ``cols`` is the bias's input,
    1, so the last row of the product is the bias gradient, the sum of ``dout`` over pixels);
    ``col2im`` computes ``dcols = dout @ w^T`` and scatters it back onto the input.
    ``need_dx=False`` skips that half (the first layer's input needs no gradient).
    """
    x_shape, cols2, w, stride, pad = cache
    kh, kw, c, f = w.shape
    n, ho, wo, _ = dout.shape
    d2 = dout.reshape(n * ho * wo, f)  # (N*Ho*Wo, F)
    dwb = np.dot(cols2.T, d2)  # (KH*KW*C + 1, F)
    dw, db = dwb[:-1].reshape(w.shape), dwb[-1]  # (KH, KW, C, F), (F,)
    if not need_dx:
        return None, dw, db
    return col2im(d2, w, x_shape, stride, pad, ws), dw, db


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


# ----------------------------------------------------------------------------- max-pooling


def _running_max(
    views: list[np.ndarray], ws: Workspace | None, key: str
) -> tuple[np.ndarray, np.ndarray]:
    """Elementwise maximum over equally shaped ``views`` and the index of the first view that
    holds it (strictly greater replaces, so ties keep the earliest)."""
    shape, dtype = views[0].shape, views[0].dtype
    best = _empty(ws, f"{key}_max", shape, dtype)
    arg = _empty(ws, f"{key}_arg", shape, np.uint8 if len(views) < 256 else np.int32)
    if len(views) == 1:
        best[...] = views[0]
        arg.fill(0)
        return best, arg
    better = _empty(ws, f"{key}_better", shape, np.bool_)
    np.greater(views[1], views[0], out=better)
    np.maximum(views[0], views[1], out=best)
    arg[...] = better  # 0 or 1
    for k in range(2, len(views)):
        np.greater(views[k], best, out=better)
        np.maximum(best, views[k], out=best)
        np.copyto(arg, k, where=better)
    return best, arg


def _tiles(x: np.ndarray, size: int, ho: int, wo: int) -> list[np.ndarray]:
    """The ``size*size`` strided views ``(N, Ho, Wo, C)`` of windows that tile ``x``, one per
    offset in row-major order: view ``(i, j)`` holds pixel ``(i, j)`` of every window."""
    return [
        x[:, i : ho * size : size, j : wo * size : size] for i in range(size) for j in range(size)
    ]


def maxpool_forward(
    x: np.ndarray, size: int, stride: int, ws: Workspace | None = None
) -> tuple[np.ndarray, Cache]:
    """Max over ``size x size`` windows moved by ``stride`` (no padding).

    Input shape: ``(N, H, W, C)``. Output shape: ``(N, Ho, Wo, C)``,
    ``Ho = (H - size) // stride + 1``. The cache records which pixel won each window: the
    first maximum in row-major order, as PyTorch and TensorFlow pick it, so tied values
    (common where an image is blank) send their gradient to one pixel only.

    Windows that tile the image (``stride == size``, the usual case) need no record of the
    winner: the maximum is taken over the ``size*size`` strided views of the image (one
    elementwise ``maximum`` each), and the backward pass finds each window's first pixel
    equal to it. Other strides record the index of the winning offset as they go.
    """
    n, h, w, c = x.shape
    ho, wo = conv_output_size(h, size, stride, 0), conv_output_size(w, size, stride, 0)
    if stride == size:
        views = _tiles(x, size, ho, wo)  # size*size views (N, Ho, Wo, C), row-major
        out = _empty(ws, "pool_max", (n, ho, wo, c), x.dtype)
        out[...] = views[0]
        for view in views[1:]:
            np.maximum(out, view, out=out)
        return out, (x.shape, (x, out), size, stride)
    windows = [
        x[:, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride]
        for i in range(size)
        for j in range(size)
    ]  # size*size views (N, Ho, Wo, C), in row-major window order
    out, arg = _running_max(windows, ws, "pool")
    return out, (x.shape, arg, size, stride)


def maxpool_backward(dout: np.ndarray, cache: Cache, ws: Workspace | None = None) -> np.ndarray:
    """Route each ``dout (N, Ho, Wo, C)`` value to the pixel that won its window:
    ``dx (N, H, W, C)``, zero elsewhere (summed where overlapping windows share a winner)."""
    x_shape, arg, size, stride = cache
    n, ho, wo, c = dout.shape
    dx = _empty(ws, "pool_dx", x_shape, dout.dtype)
    if stride == size:
        x, out = arg
        if ho * size != x_shape[1] or wo * size != x_shape[2]:
            dx.fill(0)  # rows/columns no window reaches get no gradient
        won = _empty(ws, "pool_won", out.shape, np.bool_)  # this offset is the first maximum
        taken = _empty(ws, "pool_taken", out.shape, np.bool_)  # an earlier offset was
        taken.fill(False)
        for view, dview in zip(_tiles(x, size, ho, wo), _tiles(dx, size, ho, wo), strict=True):
            np.equal(view, out, out=won)
            np.greater(won, taken, out=won)  # won and not taken
            np.multiply(dout, won, out=dview)
            np.logical_or(taken, won, out=taken)
        return dx
    dx.fill(0)
    for offset in range(size * size):
        i, j = divmod(offset, size)
        rows = slice(i, i + stride * (ho - 1) + 1, stride)
        columns = slice(j, j + stride * (wo - 1) + 1, stride)
        dx[:, rows, columns, :] += np.where(arg == offset, dout, 0)
    return dx


def maxpool_winners(cache: Cache) -> np.ndarray:
    """Which offset (row-major, ``0 .. size*size-1``) won each window: ``(N, Ho, Wo, C)``
    integers, from ``maxpool_forward``'s cache whichever way it recorded them."""
    _, arg, size, stride = cache
    if stride != size:
        return arg
    x, out = arg
    n, ho, wo, c = out.shape
    winners = np.full(out.shape, -1, dtype=np.int64)
    for offset, view in enumerate(_tiles(x, size, ho, wo)):
        winners[(winners < 0) & (view == out)] = offset
    return winners


def maxpool_naive(x: np.ndarray, size: int, stride: int) -> np.ndarray:
    """``maxpool_forward`` as the formula reads: ``out[n, i, j, c] = max of the window``."""
    n, h, w, c = x.shape
    ho, wo = conv_output_size(h, size, stride, 0), conv_output_size(w, size, stride, 0)
    out = np.zeros((n, ho, wo, c), dtype=x.dtype)
    for img in range(n):
        for i in range(ho):
            for j in range(wo):
                for ch in range(c):
                    rows = slice(i * stride, i * stride + size)
                    columns = slice(j * stride, j * stride + size)
                    out[img, i, j, ch] = x[img, rows, columns, ch].max()
    return out


def maxpool_backward_naive(dout: np.ndarray, x: np.ndarray, size: int, stride: int) -> np.ndarray:
    """Each window's gradient goes to its first maximum, one window at a time."""
    dx = np.zeros_like(x)
    n, ho, wo, c = dout.shape
    for img in range(n):
        for i in range(ho):
            for j in range(wo):
                for ch in range(c):
                    window = x[
                        img, i * stride : i * stride + size, j * stride : j * stride + size, ch
                    ]
                    p, q = np.unravel_index(np.argmax(window), window.shape)
                    dx[img, i * stride + p, j * stride + q, ch] += dout[img, i, j, ch]
    return dx


# ----------------------------------------------------------------------------- conv + pooling


def _pooled_patches(
    xp: np.ndarray, kh: int, kw: int, stride: int, size: int, po: int, qo: int
) -> np.ndarray:
    """The receptive fields of a convolution's output pixels in pooling order, read in place:
    ``(size, size, N, Po, Qo, KH, KW, C)``, entry ``(a, b, n, p, q, i, j, c)`` being padded
    input pixel ``(n, (size*p + a)*stride + i, (size*q + b)*stride + j, c)``: the field of
    output pixel ``(size*p + a, size*q + b)``, offset ``(a, b)`` of pooling window ``(p, q)``."""
    sn, sh, sw, sc = xp.strides  # xp is C-contiguous: a view of its buffer at any strides
    n, c = xp.shape[0], xp.shape[3]
    return np.ndarray(
        (size, size, n, po, qo, kh, kw, c),
        xp.dtype,
        buffer=xp,
        strides=(stride * sh, stride * sw, sn, size * stride * sh, size * stride * sw, sh, sw, sc),
    )


def conv_pool_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    stride: int,
    pad: Pad,
    size: int,
    ws: Workspace | None = None,
) -> tuple[np.ndarray, Cache]:
    """A convolution followed by max-pooling over ``size x size`` windows that tile its output
    (pooling stride ``size``): ``x (N, H, W, C) -> (N, Po, Qo, F)`` pooled pre-activations,
    ``Po = Ho // size``, the same values as ``conv2d_forward`` then ``maxpool_forward`` (up to
    the order BLAS adds in).

    im2col writes its rows in pooling order: row ``(a, b, n, p, q)`` is the receptive field of
    output pixel ``(size*p + a, size*q + b)``. The product ``cols @ [w; b]`` then comes out as
    ``size*size`` contiguous blocks ``(N*Po*Qo, F)``, one per window offset, and pooling is an
    elementwise maximum of whole blocks (its backward a masked copy into whole blocks) with no
    strided pass over the map; output pixels no window reaches are not computed at all.
    """
    kh, kw, c, f = w.shape
    n, k = x.shape[0], kh * kw * c
    po = conv_output_size(x.shape[1], kh, stride, sum(pad[0])) // size
    qo = conv_output_size(x.shape[2], kw, stride, sum(pad[1])) // size
    xp = np.ascontiguousarray(pad_images(x, pad))  # (N, Hp, Wp, C)
    fields = _pooled_patches(xp, kh, kw, stride, size, po, qo)
    rows = size * size * n * po * qo
    if c * kw < 16:  # few channels: one row of the transposed matrix per kernel entry
        cols_t = _empty(ws, "pool_cols_t", (k + 1, rows), x.dtype)
        cols_t[:k].reshape(kh, kw, c, size, size, n, po, qo)[...] = fields.transpose(
            5, 6, 7, 0, 1, 2, 3, 4
        )
        cols_t[k] = 1
        cols = cols_t.T  # (rows, K + 1) view
    else:  # many channels: one copy, KW*C contiguous values at a time
        cols7 = _empty(ws, "pool_cols", (size, size, n, po, qo, k + 1), x.dtype)
        cols7[..., :k].reshape(size, size, n, po, qo, kh, kw * c)[...] = fields.reshape(
            size, size, n, po, qo, kh, kw * c
        )
        cols7[..., k] = 1
        cols = cols7.reshape(rows, k + 1)
    wb = np.concatenate([w.reshape(k, f), b.reshape(1, f)])  # (K + 1, F): bias last
    out = _empty(ws, "pool_conv_out", (rows, f), x.dtype)
    np.dot(cols, wb, out=out)
    blocks = out.reshape(size * size, n * po * qo, f)  # one block per window offset
    pooled = _empty(ws, "pool_conv_max", (n * po * qo, f), x.dtype)
    pooled[...] = blocks[0]
    for block in blocks[1:]:
        np.maximum(pooled, block, out=pooled)
    return pooled.reshape(n, po, qo, f), (x.shape, cols, w, stride, pad, size, blocks, pooled)


def _first_maxima(blocks: np.ndarray, pooled: np.ndarray, ws: Workspace | None) -> np.ndarray:
    """``(size*size, M, F)`` booleans: block ``k`` holds the window's maximum and no earlier
    block does (the first maximum in row-major window order). Whole-array passes: few calls."""
    won = np.equal(blocks, pooled, out=_empty(ws, "pool_won", blocks.shape, np.bool_))
    seen = _empty(ws, "pool_seen", won.shape, np.bool_)  # seen[k]: a maximum in blocks 0..k
    seen[0] = won[0]
    for k in range(1, len(won) - 1):  # (logical_or.accumulate is far slower on this axis)
        np.logical_or(seen[k - 1], won[k], out=seen[k])
    np.greater(won[1:], seen[:-1], out=won[1:])  # a maximum, and none before it
    return won


def conv_pool_backward(
    dout: np.ndarray, cache: Cache, need_dx: bool = True, ws: Workspace | None = None
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of ``conv_pool_forward``: ``dout (N, Po, Qo, F) -> dx (N, H, W, C), dw, db``.

    Each window's gradient goes to the block offset that held its first maximum (row-major
    window order, as ``maxpool_backward``); ``[dw; db] = cols^T @ dblocks`` in one GEMM; for
    ``dx`` the blocks are put back in image order (zero where no window reached) for
    ``col2im``. ``need_dx=False`` skips that half (the first layer's input)."""
    x_shape, cols, w, stride, pad, size, blocks, pooled = cache
    n, po, qo, f = dout.shape
    d2 = dout.reshape(n * po * qo, f)
    won = _first_maxima(blocks, pooled, ws)  # (size*size, N*Po*Qo, F)
    dblocks = np.multiply(d2, won, out=_empty(ws, "pool_dblocks", blocks.shape, dout.dtype))
    dwb = np.dot(cols.T, dblocks.reshape(-1, f))  # (KH*KW*C + 1, F)
    dw, db = dwb[:-1].reshape(w.shape), dwb[-1]
    if not need_dx:
        return None, dw, db
    kh, kw = w.shape[:2]
    ho = conv_output_size(x_shape[1], kh, stride, sum(pad[0]))
    wo = conv_output_size(x_shape[2], kw, stride, sum(pad[1]))
    dconv = _empty(ws, "pool_dconv", (n, ho, wo, f), dout.dtype)
    if ho != po * size or wo != qo * size:
        dconv.fill(0)  # output pixels no window reaches get no gradient
    dconv[:, : po * size, : qo * size].reshape(n, po, size, qo, size, f)[...] = dblocks.reshape(
        size, size, n, po, qo, f
    ).transpose(2, 3, 0, 4, 1, 5)
    return col2im(dconv.reshape(n * ho * wo, f), w, x_shape, stride, pad, ws), dw, db


def conv_pool_winners(cache: Cache) -> np.ndarray:
    """Which window offset (row-major) won each pooled value: ``(N, Po, Qo, F)`` integers, from
    ``conv_pool_forward``'s cache (as ``maxpool_winners``)."""
    x_shape, _, w, stride, pad, size, blocks, pooled = cache
    winners = _first_maxima(blocks, pooled, None).argmax(axis=0)  # the one True per window
    po = conv_output_size(x_shape[1], w.shape[0], stride, sum(pad[0])) // size
    return winners.reshape(x_shape[0], po, -1, w.shape[3])


# ----------------------------------------------------------------------------- activations


def activation_forward(
    x: np.ndarray, kind: str, ws: Workspace | None = None
) -> tuple[np.ndarray, Cache]:
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
    return out, (kind, out)


def activation_backward(dout: np.ndarray, cache: Cache, ws: Workspace | None = None) -> np.ndarray:
    """``dx = dout * f'(x)`` with ``f'`` from the output: relu ``out > 0``, tanh ``1 - out^2``,
    sigmoid ``out (1 - out)``, linear 1."""
    kind, out = cache
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


def dense_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Cache]:
    """Fully connected layer ``out = x @ w + b``: ``(N, D), (D, U), (U,) -> (N, U)``."""
    return np.dot(x, w) + b, (x, w)


def dense_backward(dout: np.ndarray, cache: Cache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``dout (N, U) -> dx (N, D) = dout @ w^T, dw (D, U) = x^T @ dout, db (U,)``."""
    x, w = cache
    return np.dot(dout, w.T), np.dot(x.T, dout), dout.sum(axis=0)


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


def dropout_forward(
    x: np.ndarray, rate: float, rng: np.random.Generator | None
) -> tuple[np.ndarray, Cache]:
    """Inverted dropout: zero each value with probability ``rate``, scale the rest by
    ``1 / (1 - rate)`` so the expectation is unchanged. ``rng=None`` (evaluation): identity.
    Any shape in, same shape out."""
    if rng is None or rate == 0:
        return x, (None,)
    keep = rng.random(x.shape) >= rate
    mask = keep.astype(x.dtype) / np.asarray(1 - rate, dtype=x.dtype)
    return x * mask, (mask,)


def dropout_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """The same mask and scale applied to the gradient."""
    (mask,) = cache
    return dout if mask is None else dout * mask


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
