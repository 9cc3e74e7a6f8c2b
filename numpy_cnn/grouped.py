"""Grouped convolution, forward and backward, beside its plain-loop twin (the conventions of
``numpy_cnn.ops``).

With ``G`` groups, the ``C`` input channels and ``F`` filters split into ``G`` equal parts:
output channel ``f`` reads only the ``C / G`` input channels of its group ``f // (F / G)``,
so the kernel is ``(KH, KW, C / G, F)`` (``cnn_common.weights``). ``G = C = F`` is the
depthwise convolution of a MobileNet: each channel filtered on its own.

The fast pass is ``ops.im2col`` once, its rows regrouped as ``(G, N*Ho*Wo, KH*KW*C/G)``,
then one batched matrix product with the kernel regrouped as ``(G, KH*KW*C/G, F/G)``: no
Python loop over images, pixels, channels or groups.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cnn_common.spec import conv_output_size
from numpy_cnn.ops import (
    NO_PAD,
    Pad,
    Workspace,
    _empty,
    conv2d_backward_naive,
    conv2d_naive,
    im2col,
)


class GroupedConvCache(NamedTuple):
    """What ``grouped_conv_backward`` needs from ``grouped_conv_forward``."""

    x_shape: tuple[int, ...]  # (N, H, W, C)
    cols: np.ndarray  # (G, N*Ho*Wo, KH*KW*C/G): each group's im2col rows
    wg: np.ndarray  # (G, KH*KW*C/G, F/G): each group's kernel as a matrix
    w_shape: tuple[int, ...]  # (KH, KW, C/G, F)
    stride: int
    pad: Pad


def _group_kernel(w: np.ndarray, groups: int) -> np.ndarray:
    """``(KH, KW, C/G, F) -> (G, KH*KW*C/G, F/G)``: filter ``f = g*F/G + j`` is column ``j``
    of group ``g``'s matrix."""
    kh, kw, cg, f = w.shape
    fg = f // groups
    return np.ascontiguousarray(
        w.reshape(kh * kw, cg, groups, fg).transpose(2, 0, 1, 3).reshape(groups, -1, fg)
    )


def grouped_conv_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    stride: int,
    pad: Pad,
    groups: int,
    ws: Workspace | None = None,
) -> tuple[np.ndarray, GroupedConvCache]:
    """Cross-correlation of ``x (N, H, W, C)`` with ``w (KH, KW, C/G, F)`` in ``G = groups``
    groups, plus ``b (F,)`` where given: ``(N, Ho, Wo, F)``,
    ``out[n, i, j, f] = b[f] + sum_{p, q, k} xpad[n, i*s + p, j*s + q, g*C/G + k] * w[p, q, k,
    f]`` with ``g = f // (F/G)``."""
    kh, kw, cg, f = w.shape
    n = x.shape[0]
    ho = conv_output_size(x.shape[1], kh, stride, sum(pad[0]))
    wo = conv_output_size(x.shape[2], kw, stride, sum(pad[1]))
    m, fg = n * ho * wo, f // groups
    cols = im2col(x, kh, kw, stride, pad, ws)  # (M, KH*KW*C), (KH, KW, C) order
    grouped = _empty(ws, "group_cols", (groups, m, kh * kw * cg), x.dtype)
    grouped.reshape(groups, m, kh * kw, cg)[...] = cols.reshape(m, kh * kw, groups, cg).transpose(
        2, 0, 1, 3
    )
    wg = _group_kernel(w, groups)
    products = np.matmul(grouped, wg, out=_empty(ws, "group_out", (groups, m, fg), x.dtype))
    out = _empty(ws, "group_conv", (m, f), x.dtype)
    out.reshape(m, groups, fg)[...] = products.transpose(1, 0, 2)
    if b is not None:
        out += b
    return out.reshape(n, ho, wo, f), GroupedConvCache(x.shape, grouped, wg, w.shape, stride, pad)


def grouped_conv_backward(
    dout: np.ndarray, cache: GroupedConvCache, need_dx: bool = True, ws: Workspace | None = None
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of ``grouped_conv_forward``: ``dout (N, Ho, Wo, F) -> dx (N, H, W, C), dw
    (KH, KW, C/G, F), db (F,)`` (``db`` whether or not the forward had a bias). Per group,
    ``dw = cols^T @ dout`` and ``dcols = dout @ w^T`` (batched over the groups), ``dcols``
    then added back onto the pixels each row read, one kernel offset at a time."""
    kh, kw, cg, f = cache.w_shape
    groups, m, _ = cache.cols.shape
    fg = f // groups
    n, ho, wo, _ = dout.shape
    d2 = dout.reshape(m, f)
    db = d2.sum(axis=0)
    dgroups = _empty(ws, "group_dout", (groups, m, fg), dout.dtype)
    dgroups[...] = d2.reshape(m, groups, fg).transpose(1, 0, 2)
    dwg = np.matmul(cache.cols.transpose(0, 2, 1), dgroups)  # (G, KH*KW*C/G, F/G)
    dw = dwg.reshape(groups, kh * kw, cg, fg).transpose(1, 2, 0, 3).reshape(cache.w_shape)
    if not need_dx:
        return None, dw, db
    dcols = _empty(ws, "group_dcols", cache.cols.shape, dout.dtype)
    np.matmul(dgroups, cache.wg.transpose(0, 2, 1), out=dcols)  # (G, M, KH*KW*C/G)
    per_offset = dcols.reshape(groups, n, ho, wo, kh, kw, cg)
    _, h, w, c = cache.x_shape
    (top, bottom), (left, right) = cache.pad
    stride = cache.stride
    dxp = _empty(ws, "group_dxp", (n, h + top + bottom, w + left + right, c), dout.dtype)
    dxp.fill(0)
    dxp5 = dxp.reshape(n, h + top + bottom, w + left + right, groups, cg)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + stride * (ho - 1) + 1, stride)
            columns = slice(j, j + stride * (wo - 1) + 1, stride)
            dxp5[:, rows, columns] += per_offset[:, :, :, :, i, j].transpose(1, 2, 3, 0, 4)
    return dxp[:, top : top + h, left : left + w, :], dw, db


def grouped_conv_naive(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    stride: int = 1,
    pad: Pad = NO_PAD,
    groups: int = 1,
) -> np.ndarray:
    """``grouped_conv_forward`` as its definition reads: one ``ops.conv2d_naive`` per group,
    on the group's input channels and filters. ``(N, H, W, C) -> (N, Ho, Wo, F)``."""
    cg, f = w.shape[2], w.shape[3]
    fg = f // groups
    bias = np.zeros(f, dtype=x.dtype) if b is None else b
    parts = []
    for g in range(groups):
        filters = slice(g * fg, (g + 1) * fg)
        channels = x[..., g * cg : (g + 1) * cg]
        parts.append(conv2d_naive(channels, w[..., filters], bias[filters], stride, pad))
    return np.concatenate(parts, axis=3)


def grouped_conv_backward_naive(
    dout: np.ndarray, x: np.ndarray, w: np.ndarray, stride: int = 1, pad: Pad = NO_PAD,
    groups: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """The chain rule for ``grouped_conv_naive``: ``ops.conv2d_backward_naive`` per group,
    ``dx (N, H, W, C), dw (KH, KW, C/G, F), db (F,)``."""
    cg, f = w.shape[2], w.shape[3]
    fg = f // groups
    dx, dw, db = np.zeros_like(x), np.zeros_like(w), np.zeros(f, dtype=w.dtype)
    for g in range(groups):
        filters, channels = slice(g * fg, (g + 1) * fg), slice(g * cg, (g + 1) * cg)
        gdx, gdw, gdb = conv2d_backward_naive(
            dout[..., filters], x[..., channels], w[..., filters], stride, pad
        )
        dx[..., channels], dw[..., filters], db[filters] = gdx, gdw, gdb
    return dx, dw, db
