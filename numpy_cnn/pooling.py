"""Max-, average and global average pooling, forward and backward, each beside its
plain-loop twin (the conventions of ``numpy_cnn.ops``: NHWC maps, ``x`` the input, ``dout``
the gradient of the output).

Ties go to the first maximum of a window in row-major order, as PyTorch and TensorFlow route
them, so tied values (common where an image is blank) send their gradient to one pixel only.

The forward's cache is one of two named types, by how the windows lie: ``TiledPoolCache``
where they tile the image (``stride == size``: the backward finds each window's winner again
from the input and the output), ``StridedPoolCache`` otherwise (the winners recorded as the
forward goes).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cnn_common.spec import conv_output_size
from numpy_cnn.ops import Workspace, _empty


class TiledPoolCache(NamedTuple):
    """``maxpool_forward``'s cache where the windows tile the image (``stride == size``)."""

    x: np.ndarray  # (N, H, W, C): the input
    out: np.ndarray  # (N, Ho, Wo, C): the pooled output, each window's maximum
    size: int  # window side, also the stride


class StridedPoolCache(NamedTuple):
    """``maxpool_forward``'s cache for any other stride: the winners, recorded."""

    x_shape: tuple[int, ...]  # (N, H, W, C)
    winners: np.ndarray  # (N, Ho, Wo, C): the winning offset, row-major in the window
    size: int
    stride: int


PoolCache = TiledPoolCache | StridedPoolCache


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
) -> tuple[np.ndarray, PoolCache]:
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
        return out, TiledPoolCache(x, out, size)
    windows = [
        x[:, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride]
        for i in range(size)
        for j in range(size)
    ]  # size*size views (N, Ho, Wo, C), in row-major window order
    out, winners = _running_max(windows, ws, "pool")
    return out, StridedPoolCache(x.shape, winners, size, stride)


def maxpool_backward(dout: np.ndarray, cache: PoolCache, ws: Workspace | None = None) -> np.ndarray:
    """Route each ``dout (N, Ho, Wo, C)`` value to the pixel that won its window:
    ``dx (N, H, W, C)``, zero elsewhere (summed where overlapping windows share a winner)."""
    n, ho, wo, c = dout.shape
    if isinstance(cache, TiledPoolCache):
        x, out, size = cache.x, cache.out, cache.size
        dx = _empty(ws, "pool_dx", x.shape, dout.dtype)
        if ho * size != x.shape[1] or wo * size != x.shape[2]:
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
    size, stride = cache.size, cache.stride
    dx = _empty(ws, "pool_dx", cache.x_shape, dout.dtype)
    dx.fill(0)
    for offset in range(size * size):
        i, j = divmod(offset, size)
        rows = slice(i, i + stride * (ho - 1) + 1, stride)
        columns = slice(j, j + stride * (wo - 1) + 1, stride)
        dx[:, rows, columns, :] += np.where(cache.winners == offset, dout, 0)
    return dx


def maxpool_winners(cache: PoolCache) -> np.ndarray:
    """Which offset (row-major, ``0 .. size*size-1``) won each window: ``(N, Ho, Wo, C)``
    integers, from ``maxpool_forward``'s cache whichever way it recorded them."""
    if isinstance(cache, StridedPoolCache):
        return cache.winners
    out = cache.out
    n, ho, wo, c = out.shape
    winners = np.full(out.shape, -1, dtype=np.int64)
    for offset, view in enumerate(_tiles(cache.x, cache.size, ho, wo)):
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


# ----------------------------------------------------------------------------- average pooling


class AvgPoolCache(NamedTuple):
    """What ``avgpool_backward`` needs from ``avgpool_forward``: shapes only."""

    x_shape: tuple[int, ...]  # (N, H, W, C)
    size: int
    stride: int


def _windows(x: np.ndarray, size: int, stride: int, ho: int, wo: int) -> list[np.ndarray]:
    """The ``size*size`` strided views ``(N, Ho, Wo, C)`` of ``x``, one per window offset in
    row-major order: view ``(i, j)`` holds pixel ``(i, j)`` of every window."""
    return [
        x[:, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride]
        for i in range(size)
        for j in range(size)
    ]


def avgpool_forward(
    x: np.ndarray, size: int, stride: int, ws: Workspace | None = None
) -> tuple[np.ndarray, AvgPoolCache]:
    """Mean over ``size x size`` windows moved by ``stride`` (no padding): ``(N, H, W, C) ->
    (N, Ho, Wo, C)``, ``Ho = (H - size) // stride + 1``. One elementwise add per window
    offset, into a reused buffer."""
    n, h, w, c = x.shape
    ho, wo = conv_output_size(h, size, stride, 0), conv_output_size(w, size, stride, 0)
    views = _windows(x, size, stride, ho, wo)
    out = _empty(ws, "avgpool_out", (n, ho, wo, c), x.dtype)
    out[...] = views[0]
    for view in views[1:]:
        out += view
    out *= x.dtype.type(1 / (size * size))
    return out, AvgPoolCache(x.shape, size, stride)


def avgpool_backward(
    dout: np.ndarray, cache: AvgPoolCache, ws: Workspace | None = None
) -> np.ndarray:
    """Each window's gradient shared equally by its pixels: ``dout (N, Ho, Wo, C) -> dx
    (N, H, W, C)``, ``dout / size^2`` added to every pixel of the window (summed where
    windows overlap, zero where none reaches)."""
    size, stride = cache.size, cache.stride
    n, ho, wo, c = dout.shape
    share = _empty(ws, "avgpool_share", dout.shape, dout.dtype)
    np.multiply(dout, dout.dtype.type(1 / (size * size)), out=share)
    dx = _empty(ws, "avgpool_dx", cache.x_shape, dout.dtype)
    if stride == size and ho * size == cache.x_shape[1] and wo * size == cache.x_shape[2]:
        for view in _windows(dx, size, stride, ho, wo):  # the windows tile dx: plain copies
            view[...] = share
        return dx
    dx.fill(0)
    for view in _windows(dx, size, stride, ho, wo):
        view += share
    return dx


def avgpool_naive(x: np.ndarray, size: int, stride: int) -> np.ndarray:
    """``avgpool_forward`` as the formula reads: ``out[n, i, j, c] = mean of the window``."""
    n, h, w, c = x.shape
    ho, wo = conv_output_size(h, size, stride, 0), conv_output_size(w, size, stride, 0)
    out = np.zeros((n, ho, wo, c), dtype=x.dtype)
    for img in range(n):
        for i in range(ho):
            for j in range(wo):
                for ch in range(c):
                    total = 0.0
                    for p in range(size):
                        for q in range(size):
                            total += x[img, i * stride + p, j * stride + q, ch]
                    out[img, i, j, ch] = total / (size * size)
    return out


def avgpool_backward_naive(dout: np.ndarray, x: np.ndarray, size: int, stride: int) -> np.ndarray:
    """Every pixel of a window receives ``1 / size^2`` of its gradient, one window at a time."""
    dx = np.zeros_like(x)
    n, ho, wo, c = dout.shape
    for img in range(n):
        for i in range(ho):
            for j in range(wo):
                for ch in range(c):
                    for p in range(size):
                        for q in range(size):
                            g = dout[img, i, j, ch] / (size * size)
                            dx[img, i * stride + p, j * stride + q, ch] += g
    return dx


class GlobalAvgPoolCache(NamedTuple):
    """What ``global_avgpool_backward`` needs: the map's shape."""

    x_shape: tuple[int, ...]  # (N, H, W, C)


def global_avgpool_forward(x: np.ndarray) -> tuple[np.ndarray, GlobalAvgPoolCache]:
    """The mean of every channel over the map: ``(N, H, W, C) -> (N, C)``."""
    n, h, w, c = x.shape
    out = x.reshape(n, h * w, c).sum(axis=1) / x.dtype.type(h * w)
    return out, GlobalAvgPoolCache(x.shape)


def global_avgpool_backward(
    dout: np.ndarray, cache: GlobalAvgPoolCache, ws: Workspace | None = None
) -> np.ndarray:
    """``dout (N, C)`` shared equally by the ``H*W`` pixels of each channel: ``dx (N, H, W,
    C)``."""
    n, h, w, c = cache.x_shape
    dx = _empty(ws, "gap_dx", cache.x_shape, dout.dtype)
    dx[...] = (dout / dout.dtype.type(h * w))[:, None, None, :]
    return dx


def global_avgpool_naive(x: np.ndarray) -> np.ndarray:
    """Each channel's mean over its pixels, one sum at a time: ``(N, H, W, C) -> (N, C)``."""
    n, h, w, c = x.shape
    out = np.zeros((n, c), dtype=x.dtype)
    for img in range(n):
        for ch in range(c):
            total = 0.0
            for i in range(h):
                for j in range(w):
                    total += x[img, i, j, ch]
            out[img, ch] = total / (h * w)
    return out


def global_avgpool_backward_naive(dout: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Every pixel of channel ``c`` receives ``dout[n, c] / (H*W)``, one at a time."""
    n, h, w, c = x.shape
    dx = np.zeros_like(x)
    for img in range(n):
        for ch in range(c):
            for i in range(h):
                for j in range(w):
                    dx[img, i, j, ch] = dout[img, ch] / (h * w)
    return dx
