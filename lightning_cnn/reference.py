"""The plain PyTorch training loop (no Lightning): the yardstick for parity and speed.

``plain_torch_train`` trains ``CNN`` on the shared batch order with the shared augmentation and
the optimiser from ``make_optimizer``: everything ``LitCNN`` does in a training epoch, written
as the ten lines a PyTorch user would write. The parity test holds LitCNN's per-step losses
and final weights to this loop's; the benchmarks time its epochs against LitCNN's and NumPy's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from cnn_common.batches import epoch_batches
from cnn_common.spec import ModelSpec, TrainSpec
from cnn_common.weights import Weights
from lightning_cnn.batching import TORCH_DTYPES, BatchSource, dropout_seed
from lightning_cnn.model import CNN, get_weights, set_weights
from lightning_cnn.optim import make_optimizer


@dataclass
class PlainRun:
    """What the plain loop measured: every step's loss, each epoch's time, the final weights."""

    step_losses: list[float] = field(default_factory=list)  # every training step, in order
    epoch_times: list[float] = field(default_factory=list)  # seconds of each epoch's steps
    weights: Weights = field(default_factory=dict)  # final weights, canonical layout


def plain_torch_train(
    spec: ModelSpec,
    train_spec: TrainSpec,
    x: np.ndarray,
    y: np.ndarray,
    init_weights: Weights | None = None,
    epochs: int | None = None,
    device: str = "cpu",
) -> PlainRun:
    """Train a fresh ``CNN`` on ``x: (N, H, W, C)``, ``y: (N,)`` with a plain PyTorch loop.

    Args:
        spec: the architecture.
        train_spec: optimiser, batch size, seed, augmentation, dtype.
        x: training images, floats in [0, 1], NHWC (converted to NCHW once).
        y: labels, class indices.
        init_weights: canonical starting weights; None -> PyTorch's initialisers after
            ``torch.manual_seed(train_spec.seed)``, as ``lightning_cnn.train`` does.
        epochs: how many epochs; None -> ``train_spec.epochs``.
        device: the torch device to train on (``"cuda"`` for a GPU). Batches are cut on the CPU
            and moved each step, as Lightning moves a DataLoader's batches.
    """
    torch.manual_seed(train_spec.seed)
    net = CNN(spec).to(TORCH_DTYPES[train_spec.dtype])
    if init_weights is not None:
        set_weights(net, init_weights)
    net.to(device)
    optimizer = make_optimizer(net.parameters(), train_spec)
    source = BatchSource(x, y, train_spec)
    run = PlainRun()
    net.train()
    for epoch in range(train_spec.epochs if epochs is None else epochs):
        if net.has_dropout:
            torch.manual_seed(dropout_seed(train_spec.seed, epoch))
        start = time.perf_counter()
        batches = epoch_batches(len(source), train_spec.batch_size, train_spec.seed, epoch)
        for step, idx in enumerate(batches):
            xb, yb = source.batch(epoch, step, idx)
            xb, yb = xb.to(device), yb.to(device)
            optimizer.zero_grad()
            loss = F.cross_entropy(net(xb), yb)
            loss.backward()
            optimizer.step()
            run.step_losses.append(loss.item())
        run.epoch_times.append(time.perf_counter() - start)
    run.weights = get_weights(net)
    return run
