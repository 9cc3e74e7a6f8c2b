"""A convolution and the max-pooling that tiles its output, as one operation.

``conv_pool_forward`` gives the values of ``ops.conv2d_forward`` then
``pooling.maxpool_forward`` (up to the order BLAS adds in), faster: im2col writes its rows in
pooling order, so the product comes out as one contiguous block per window offset and pooling
is an elementwise maximum of whole blocks, its backward a masked copy into whole blocks.
Training and inference use it for every convolution followed by pooling windows that tile its
output; the layer-by-layer functions of ``ops`` and ``pooling`` stay for every other layout,
for the layer traces and for reading.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cnn_common.spec import conv_output_size
from numpy_cnn.ops import Pad, Workspace, _empty, col2im, pad_images


class ConvPoolCache(NamedTuple):
    """What ``conv_pool_backward`` needs from ``conv_pool_forward`` (M = N*Po*Qo windows)."""

    x_shape: tuple[int, ...]  # (N, H, W, C): the input's shape, for dx
    cols: np.ndarray  # (size*size*M, KH*KW*C + 1): im2col rows in pooling order, a 1 last
    w: np.ndarray  # (KH, KW, C, F)
    stride: int
    pad: Pad
    size: int  # pooling window side, also the pooling stride
    blocks: np.ndarray  # (size*size, M, F): the convolution's output, one block per offset
    pooled: np.ndarray  # (M, F): each window's maximum


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
) -> tuple[np.ndarray, ConvPoolCache]:
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
    cache = ConvPoolCache(x.shape, cols, w, stride, pad, size, blocks, pooled)
    return pooled.reshape(n, po, qo, f), cache


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
    dout: np.ndarray, cache: ConvPoolCache, need_dx: bool = True, ws: Workspace | None = None
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of ``conv_pool_forward``: ``dout (N, Po, Qo, F) -> dx (N, H, W, C), dw, db``.

    Each window's gradient goes to the block offset that held its first maximum (row-major
    window order, as ``maxpool_backward``); ``[dw; db] = cols^T @ dblocks`` in one GEMM; for
    ``dx`` the blocks are put back in image order (zero where no window reached) for
    ``col2im``. ``need_dx=False`` skips that half (the first layer's input)."""
    x_shape, w, stride, pad, size = cache.x_shape, cache.w, cache.stride, cache.pad, cache.size
    n, po, qo, f = dout.shape
    d2 = dout.reshape(n * po * qo, f)
    won = _first_maxima(cache.blocks, cache.pooled, ws)  # (size*size, N*Po*Qo, F)
    dblocks = np.multiply(d2, won, out=_empty(ws, "pool_dblocks", won.shape, dout.dtype))
    dwb = np.dot(cache.cols.T, dblocks.reshape(-1, f))  # (KH*KW*C + 1, F)
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


def conv_pool_winners(cache: ConvPoolCache) -> np.ndarray:
    """Which window offset (row-major) won each pooled value: ``(N, Po, Qo, F)`` integers, from
    ``conv_pool_forward``'s cache (as ``maxpool_winners``)."""
    winners = _first_maxima(cache.blocks, cache.pooled, None).argmax(axis=0)  # (M, F)
    x_shape, w = cache.x_shape, cache.w
    po = conv_output_size(x_shape[1], w.shape[0], cache.stride, sum(cache.pad[0])) // cache.size
    return winners.reshape(x_shape[0], po, -1, w.shape[3])
