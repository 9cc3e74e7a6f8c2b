"""The training step: a batch cut into pieces, the pieces spread over the cores.

``train_step`` runs forward, loss and backward (``numpy_cnn.network``) on pieces of ``PIECE``
images, one contiguous run of pieces per thread of ``numpy_cnn.parallel``, adds the pieces'
gradients in a fixed order and takes one optimiser step. ``across_threads`` spreads any work
over the threads the same way (evaluation uses it too).

Batchnorm normalises with the statistics of the WHOLE batch, which a piece alone does not
see. A model with batchnorm therefore runs one shard of the batch per thread, each as a single
piece, and the shards meet at every batchnorm layer (``ShardSums``): its per-channel sums are
added over the shards, in shard order, so every shard normalises with the batch's mean and
biased variance (two passes: the mean, then the squared deviations from it) and its backward
pass uses the batch's sums. The running statistics move once per step, from shard 0's caches
(which hold the whole batch's statistics).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from cnn_common.phases import StepClock
from cnn_common.weights import Weights
from numpy_cnn import norm, ops, parallel
from numpy_cnn.network import CNN, backward, forward, new_workspaces, update_running
from numpy_cnn.optim import Optimizer

T = TypeVar("T")

PIECE = 32  # images per forward/backward pass: a piece's buffers stay in the core's caches


class ShardSums:
    """The meeting point of the shards of one batch, one thread each: ``combiner(rank)`` is
    shard ``rank``'s ``norm.Combine``, which waits for every shard's vector and returns their
    sum, added in shard order (so every shard gets the same numbers)."""

    def __init__(self, shards: int) -> None:
        self.barrier = threading.Barrier(shards)
        self.parts: list[np.ndarray | None] = [None] * shards

    def combiner(self, rank: int) -> norm.Combine:
        def combine(local: np.ndarray) -> np.ndarray:
            self.parts[rank] = local
            self.barrier.wait()  # every shard's part is in
            total = np.array(self.parts[0], copy=True)
            for part in self.parts[1:]:
                total += part
            self.barrier.wait()  # every shard has read them before any writes its next
            return total

        return combine


def _pieces_step(
    model: CNN,
    x: np.ndarray,
    y: np.ndarray,
    seeds: np.ndarray,
    total: int,
    piece: int = PIECE,
    combine: norm.Combine | None = None,
    update: bool = False,
) -> tuple[float, int, Weights, list[float]]:
    """Forward and backward over ``x (n, H, W, C)`` in pieces of ``piece`` images, one after
    another: (sum of the losses, correct predictions, the pieces' share of the batch-mean
    gradients, added in piece order, and the seconds spent in forward and in backward).
    Piece ``i`` draws its dropout masks from ``seeds[i]``. A shard of a batch with batchnorm
    is one piece, with the ``combine`` of its shard; ``update`` moves the running statistics
    after it."""
    loss_sum, correct, grads = 0.0, 0, None
    dropout = any(layer.kind == "dropout" for layer in model.layers)
    seconds = [0.0, 0.0]  # in forward + loss, in backward
    for seed, start in zip(seeds, range(0, len(y), piece), strict=True):
        began = time.perf_counter()
        xs, ys = x[start : start + piece], y[start : start + piece]
        rng = np.random.default_rng(seed) if dropout else None  # only dropout draws
        logits, caches = forward(model, xs, train=True, rng=rng, combine=combine)
        loss, dlogits = ops.softmax_cross_entropy(logits, ys)
        dlogits *= len(ys) / total  # the piece's part of the mean over the whole batch
        loss_sum += loss * len(ys)
        correct += int(np.count_nonzero(logits.argmax(axis=1) == ys))
        between = time.perf_counter()
        piece_grads = backward(model, dlogits, caches)
        if update:
            update_running(model, caches)  # the whole batch's statistics
        seconds[0] += between - began
        seconds[1] += time.perf_counter() - between
        if grads is None:
            grads = {name: g.copy() for name, g in piece_grads.items()}  # g may be scratch
        else:
            for name, g in piece_grads.items():
                grads[name] += g
    assert grads is not None
    return loss_sum, correct, grads, seconds


def replicas(model: CNN, count: int) -> list[CNN]:
    """``model`` and ``count - 1`` views of it sharing its weights (the same dict, so updates
    and ``set_weights`` reach all), each with its own workspaces: one per thread."""
    while len(model.replicas) < count - 1:
        workspaces = new_workspaces(model.layers)
        model.replicas.append(CNN(model.spec, model.dtype, model.layers, model.weights, workspaces))
    return [model, *model.replicas[: count - 1]]


def across_threads(model: CNN, count: int, work: Callable[[CNN, int, int], T]) -> list[T]:
    """``work(replica, a, b)`` for ``count`` items cut into one contiguous run ``[a, b)`` per
    thread of ``numpy_cnn.parallel`` (at most one thread per item, at least one), each thread
    with its own replica of ``model``; the results in run order, whichever thread finishes
    first. One thread runs in the caller's."""
    threads = max(1, min(parallel.workers(), count))
    cuts = np.linspace(0, count, threads + 1).astype(int)  # items per thread
    jobs = list(zip(replicas(model, threads), cuts[:-1], cuts[1:], strict=True))
    if threads == 1:
        return [work(*jobs[0])]
    return list(parallel.executor().map(lambda job: work(*job), jobs))


def train_step(
    model: CNN,
    optimizer: Optimizer,
    x: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    clock: StepClock | None = None,
) -> tuple[float, int]:
    """Forward, loss, backward and one optimiser update on one batch.

    ``x (N, H, W, C)`` in the model's dtype, ``y (N,)`` -> (mean loss, number of correct
    predictions made by the model as it was before the update). The batch is cut into pieces of
    ``PIECE`` images (smaller working sets run faster per image, and two cores contend less for
    memory), and the pieces into one contiguous run per core (``parallel.workers()``), run in
    parallel; each piece's dropout masks come from its own generator seeded from ``rng``, and
    the gradients are added in a fixed order, so the step is deterministic.

    A model with batchnorm runs one shard of the batch per core instead, each as one piece,
    the shards adding their batchnorm sums together (``ShardSums``: the module's docstring).

    ``clock`` (``cnn_common.phases``) receives the step's forward, backward and optimiser time:
    forward and backward alternate piece by piece on every core, so the wall time of the
    parallel part is split between them in the proportion of the cores' time in each.
    """
    n = len(y)
    began = time.perf_counter()
    if model.batchnorm:
        results = _shards_step(model, x, y, rng)
    else:
        pieces = -(-n // PIECE)
        seeds = rng.integers(0, 2**63, size=pieces)

        def run(replica: CNN, a: int, b: int) -> tuple[float, int, Weights, list[float]]:
            return _pieces_step(
                replica, x[a * PIECE : b * PIECE], y[a * PIECE : b * PIECE], seeds[a:b], n
            )

        results = across_threads(model, pieces, run)
    if clock is not None:
        wall = time.perf_counter() - began
        forward_s, backward_s = (sum(r[3][i] for r in results) for i in (0, 1))
        share = forward_s / max(forward_s + backward_s, 1e-12)
        clock.add("forward", wall * share)
        clock.add("backward", wall * (1 - share))
        clock.skip()
    grads = results[0][2]
    for _, _, thread_grads, _ in results[1:]:
        for name, g in thread_grads.items():
            grads[name] += g
    optimizer.step(model.trainable_weights(), grads)
    if clock is not None:
        clock.mark("optimizer")
    return sum(r[0] for r in results) / n, sum(r[1] for r in results)


def _shards_step(
    model: CNN, x: np.ndarray, y: np.ndarray, rng: np.random.Generator
) -> list[tuple[float, int, Weights, list[float]]]:
    """Forward and backward of a model with batchnorm over ``x (N, H, W, C)``: one shard of
    the batch per thread, each one piece, meeting at every batchnorm layer; shard ``i``'s
    dropout masks from its own generator seeded from ``rng``. The ``_pieces_step`` results
    in shard order."""
    n = len(y)
    shards = max(1, min(parallel.workers(), n))
    cuts = np.linspace(0, n, shards + 1).astype(int)  # images per shard
    seeds = rng.integers(0, 2**63, size=shards)
    sums = ShardSums(shards) if shards > 1 else None

    def run(replica: CNN, a: int, b: int) -> tuple[float, int, Weights, list[float]]:
        start, stop = cuts[a], cuts[b]
        combine = sums.combiner(a) if sums is not None else None
        try:
            return _pieces_step(
                replica, x[start:stop], y[start:stop], seeds[a:b], n, stop - start, combine, a == 0
            )
        except BaseException:
            if sums is not None:
                sums.barrier.abort()  # the other shards stop waiting for this one
            raise

    return across_threads(model, shards, run)
