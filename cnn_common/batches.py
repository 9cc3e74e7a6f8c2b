"""THE batch order, and the shared augmentation.

Every framework trains on ``epoch_batches(n, batch_size, seed, epoch)``: a permutation of
``range(n)`` drawn from the ``order`` seed stream of the epoch (``cnn_common.seeds``), cut into
batches with the last partial batch kept. No framework shuffles on its own, so the same
arguments give the same batches in every framework, in any process, on any machine.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

from cnn_common.seeds import generator

T = TypeVar("T")  # a batch of indices, or anything that stands for one (a step number)


def epoch_batches(
    n: int, batch_size: int, seed: int, epoch: int, stream: str = "order"
) -> list[np.ndarray]:
    """Index batches of epoch ``epoch`` (0-based): each of ``range(n)`` exactly once.

    Returns ``ceil(n / batch_size)`` int64 arrays of length ``batch_size`` (the last may be
    shorter). ``stream="native_order"`` draws another permutation (NumPy's own shuffling when
    a run asks for the framework's native batch order).
    """
    if n < 1 or batch_size < 1:
        raise ValueError(f"n and batch_size must be positive, got n={n}, batch_size={batch_size}")
    order = generator(seed, stream, epoch).permutation(n)  # (n,)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def steps_per_epoch(n: int, batch_size: int, world_size: int = 1) -> int:
    """Number of batches ``epoch_batches`` gives for ``n`` items; with ``world_size`` processes
    sharing them (``shard_batches``), the number each process takes."""
    batches = -(-n // batch_size)
    return -(-batches // world_size)


def shard_batches(batches: list[T], rank: int, world_size: int) -> list[T]:
    """This process's share of an epoch's batches under data parallelism.

    Rank ``r`` takes batches ``r, r + world, ...``. When the count does not divide evenly the
    list is padded by wrapping around to its start (as ``DistributedSampler`` pads), so every
    rank takes the same number of steps and every index is still seen.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, {world_size})")
    if not batches:
        return []
    total = -(-len(batches) // world_size) * world_size
    # Cycle through the list as often as needed: with more ranks than batches, one wrap is short.
    padded = [batches[i % len(batches)] for i in range(total)]
    return padded[rank::world_size]


def augment_rng(seed: int, epoch: int, step: int) -> np.random.Generator:
    """The generator for the augmentation of batch ``step`` of ``epoch``."""
    return generator(seed, "augment", epoch, step)


def random_shift(x: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Shift each image by up to ``max_shift`` pixels in each direction, filling with zeros.

    ``x: (N, H, W, C)`` -> same shape and dtype. Shifts are drawn per image from ``rng``:
    ``dy, dx`` uniform in ``[-max_shift, max_shift]``.
    """
    if max_shift == 0:
        return x
    n, h, w, _ = x.shape
    s = max_shift
    shifts = rng.integers(-s, s + 1, size=(n, 2))  # (N, 2): dy, dx
    padded = np.pad(x, ((0, 0), (s, s), (s, s), (0, 0)))  # (N, H+2s, W+2s, C)
    rows = (s - shifts[:, 0])[:, None] + np.arange(h)  # (N, H) source rows
    cols = (s - shifts[:, 1])[:, None] + np.arange(w)  # (N, W) source cols
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def augment_batch(x: np.ndarray, max_shift: int, seed: int, epoch: int, step: int) -> np.ndarray:
    """The shared augmentation of one training batch (identity when ``max_shift`` is 0)."""
    if max_shift == 0:
        return x
    return random_shift(x, max_shift, augment_rng(seed, epoch, step))
