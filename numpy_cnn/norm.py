"""Batch normalisation, forward and backward, and its running statistics, each beside its
plain-loop twin (the conventions of ``numpy_cnn.ops``: NHWC maps, ``x`` the input, ``dout``
the gradient of the output).

Per channel ``c``, over the ``M = N*H*W`` values of a batch:

- training mode (the batch's statistics): ``mean = mean(x)``, ``var = mean((x - mean)^2)``
  (biased), ``y = gamma * (x - mean) / sqrt(var + eps) + beta``;
- evaluation mode (the running statistics): ``y = gamma * (x - moving_mean) /
  sqrt(moving_variance + eps) + beta``.

The running statistics are updated once per training step from the batch's mean and biased
variance (``running_update``), in the spec's conventions (``cnn_common.spec``): the variance
stored ``unbiased`` (``var * M / (M - 1)``) or ``biased``, the average ``torch``
(``new = (1 - m) * old + m * batch``) or ``keras`` (``new = m * old + (1 - m) * batch``).

The fast functions make their ``(M, C)`` arrays in ``Workspace`` buffers: a training step
allocates only per-channel vectors.

A batch may be split into shards run side by side (``numpy_cnn.step``): ``combine`` then sums
a per-channel vector over the shards of the batch, so that each shard normalises with the
statistics of the WHOLE batch (its mean first, then the squared deviations from that mean:
two passes) and its backward pass uses the whole batch's sums too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from numpy_cnn.ops import Workspace, _empty

# Sums a per-channel vector over the shards of a batch (every shard gets the same total).
Combine = Callable[[np.ndarray], np.ndarray]


class BatchNormCache(NamedTuple):
    """What ``batchnorm_backward`` needs from ``batchnorm_forward``."""

    xhat: np.ndarray  # (M, C): the normalised input, M = N*H*W
    gamma: np.ndarray  # (C,)
    inv_std: np.ndarray  # (C,): 1 / sqrt(var + eps) of the statistics used
    batch: bool  # normalised with the batch's statistics (training mode)
    mean: np.ndarray  # (C,): the statistics used (the batch's, or the running ones)
    var: np.ndarray  # (C,): the batch's biased variance, or the running variance
    count: int  # the values per channel of the whole batch (N*H*W over every shard)
    combine: Combine | None  # sums over the batch's shards, or None: one shard


def batchnorm_forward(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    eps: float,
    running: tuple[np.ndarray, np.ndarray] | None = None,
    ws: Workspace | None = None,
    combine: Combine | None = None,
) -> tuple[np.ndarray, BatchNormCache]:
    """Normalise every channel of ``x (N, H, W, C)``: with the batch's mean and biased
    variance (training mode, ``running=None``) or with ``running = (moving_mean,
    moving_variance)`` (evaluation mode); then scale by ``gamma (C,)`` and shift by
    ``beta (C,)``. Output shape ``(N, H, W, C)``; the cache keeps the statistics used
    (``running_update`` reads the batch's from it). ``x`` is one shard of the batch where
    ``combine`` is given (see the module's docstring)."""
    c = x.shape[-1]
    x2 = x.reshape(-1, c)  # (M, C)
    count = x2.shape[0]
    xhat = _empty(ws, "bn_xhat", x2.shape, x.dtype)
    if running is None:
        sums = x2.sum(axis=0)
        if combine is not None:  # this shard's sums and values, added over the shards
            both = combine(np.append(sums, x.dtype.type(count)))
            sums, count = both[:c], round(float(both[c]))
        mean = sums / x.dtype.type(count)
        np.subtract(x2, mean, out=xhat)  # centred
        squares = np.einsum("ij,ij->j", xhat, xhat)
        if combine is not None:
            squares = combine(squares)
        var = squares / x.dtype.type(count)  # biased
    else:
        mean, var = running
        np.subtract(x2, mean, out=xhat)
    inv_std = 1 / np.sqrt(var + x.dtype.type(eps))
    xhat *= inv_std
    out = np.multiply(xhat, gamma, out=_empty(ws, "bn_out", x2.shape, x.dtype))
    out += beta
    batch = running is None
    cache = BatchNormCache(xhat, gamma, inv_std, batch, mean, var, count, combine)
    return out.reshape(x.shape), cache


def batchnorm_backward(
    dout: np.ndarray, cache: BatchNormCache, ws: Workspace | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of ``batchnorm_forward``: ``dout (N, H, W, C) -> dx (N, H, W, C), dgamma (C,),
    dbeta (C,)``.

    ``dbeta = sum(dout)``, ``dgamma = sum(dout * xhat)`` over the ``M`` values of a channel.
    Training mode (the statistics depend on ``x``):
    ``dx = gamma * inv_std * (dout - dbeta / M - xhat * dgamma / M)``;
    evaluation mode (fixed statistics): ``dx = gamma * inv_std * dout``. For a shard of a
    batch, ``dx`` takes the whole batch's sums (``M``, ``dbeta``, ``dgamma``), while the
    returned ``dgamma`` and ``dbeta`` are the shard's (the shards' gradients are added later).
    """
    xhat = cache.xhat
    c = xhat.shape[1]
    d2 = dout.reshape(xhat.shape)  # (M, C)
    dbeta = d2.sum(axis=0)
    dgamma = np.einsum("ij,ij->j", d2, xhat)
    dx = _empty(ws, "bn_dx", xhat.shape, dout.dtype)
    scale = cache.gamma * cache.inv_std
    if cache.batch:
        total_beta, total_gamma = dbeta, dgamma
        if cache.combine is not None:
            both = cache.combine(np.concatenate([dbeta, dgamma]))
            total_beta, total_gamma = both[:c], both[c:]
        m = dout.dtype.type(cache.count)
        np.multiply(xhat, total_gamma / m, out=dx)
        dx += total_beta / m
        np.subtract(d2, dx, out=dx)
        dx *= scale
    else:
        np.multiply(d2, scale, out=dx)
    return dx.reshape(dout.shape), dgamma, dbeta


def running_update(
    moving_mean: np.ndarray,
    moving_variance: np.ndarray,
    cache: BatchNormCache,
    momentum: float,
    convention: str,
    variance: str,
) -> tuple[np.ndarray, np.ndarray]:
    """The running statistics after one training step, from the batch's mean and biased
    variance in ``cache`` (``batchnorm_forward`` in training mode): ``(new mean (C,), new
    variance (C,))``.

    ``variance`` "unbiased" stores the batch's variance times ``M / (M - 1)``, "biased" as
    it is; ``convention`` "torch": ``new = (1 - m) * old + m * batch``, "keras":
    ``new = m * old + (1 - m) * batch``.
    """
    if not cache.batch:
        raise ValueError("running statistics are updated from a training-mode forward")
    count = cache.count
    batch_var = cache.var
    if variance == "unbiased":
        if count < 2:
            raise ValueError(
                "an unbiased variance needs more than one value per channel in a batch"
            )
        batch_var = cache.var * (count / (count - 1))
    m = momentum
    if convention == "torch":
        return (1 - m) * moving_mean + m * cache.mean, (1 - m) * moving_variance + m * batch_var
    return m * moving_mean + (1 - m) * cache.mean, m * moving_variance + (1 - m) * batch_var


# ----------------------------------------------------------------------------- the twins


def batchnorm_naive(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    eps: float,
    running: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``batchnorm_forward`` as the formula reads, one channel and one value at a time:
    ``(N, H, W, C) -> (out (N, H, W, C), mean (C,), biased variance (C,))`` (the statistics
    used: the batch's, or ``running``'s)."""
    n, h, w, c = x.shape
    out = np.zeros_like(x)
    means, variances = np.zeros(c, x.dtype), np.zeros(c, x.dtype)
    for ch in range(c):
        values = [x[i, r, s, ch] for i in range(n) for r in range(h) for s in range(w)]
        if running is None:
            mean = sum(values) / len(values)
            var = sum((v - mean) ** 2 for v in values) / len(values)
        else:
            mean, var = running[0][ch], running[1][ch]
        means[ch], variances[ch] = mean, var
        for i in range(n):
            for r in range(h):
                for s in range(w):
                    xhat = (x[i, r, s, ch] - mean) / np.sqrt(var + eps)
                    out[i, r, s, ch] = gamma[ch] * xhat + beta[ch]
    return out, means, variances


def batchnorm_backward_naive(
    dout: np.ndarray, x: np.ndarray, gamma: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The training-mode chain rule for ``batchnorm_naive``, stage by stage as the textbook
    derives it (through ``xhat``, the variance and the mean), one channel at a time:
    ``dx (N, H, W, C), dgamma (C,), dbeta (C,)``."""
    n, h, w, c = x.shape
    dx = np.zeros_like(x)
    dgamma, dbeta = np.zeros(c, x.dtype), np.zeros(c, x.dtype)
    index = [(i, r, s) for i in range(n) for r in range(h) for s in range(w)]
    m = len(index)
    for ch in range(c):
        values = [x[i, r, s, ch] for i, r, s in index]
        grads = [dout[i, r, s, ch] for i, r, s in index]
        mean = sum(values) / m
        var = sum((v - mean) ** 2 for v in values) / m
        inv_std = 1 / np.sqrt(var + eps)
        dxhat = [g * gamma[ch] for g in grads]
        dvar = sum(d * (v - mean) * -0.5 * inv_std**3 for d, v in zip(dxhat, values, strict=True))
        dmean = sum(-d * inv_std for d in dxhat) + dvar * sum(-2 * (v - mean) for v in values) / m
        for k, (i, r, s) in enumerate(index):
            dx[i, r, s, ch] = dxhat[k] * inv_std + dvar * 2 * (values[k] - mean) / m + dmean / m
            dgamma[ch] += grads[k] * (values[k] - mean) * inv_std
            dbeta[ch] += grads[k]
    return dx, dgamma, dbeta


def running_update_naive(
    moving_mean: np.ndarray,
    moving_variance: np.ndarray,
    x: np.ndarray,
    momentum: float,
    convention: str,
    variance: str,
) -> tuple[np.ndarray, np.ndarray]:
    """``running_update`` one channel at a time from the batch ``x (N, H, W, C)`` itself:
    its mean, its variance with divisor ``M - 1`` (unbiased) or ``M`` (biased), then the
    convention's average."""
    c = x.shape[-1]
    new_mean, new_var = np.zeros_like(moving_mean), np.zeros_like(moving_variance)
    for ch in range(c):
        values = list(x[..., ch].ravel())
        mean = sum(values) / len(values)
        divisor = len(values) - 1 if variance == "unbiased" else len(values)
        var = sum((v - mean) ** 2 for v in values) / divisor
        keep = 1 - momentum if convention == "torch" else momentum
        new_mean[ch] = keep * moving_mean[ch] + (1 - keep) * mean
        new_var[ch] = keep * moving_variance[ch] + (1 - keep) * var
    return new_mean, new_var
