"""A worker's parity task: one framework, the shared weights, the shared batches, K steps.

From the shared initial weights ``w0``, for each step ``k = 0..K-1`` it records the
framework's layer-by-layer trace on batch ``k`` at its own weights after ``k`` updates
(``layer_trace``: every layer's output, the gradient with respect to every layer's input and
every weight, the loss; evaluation mode, so batchnorm normalises with the running statistics),
its trainable weights after ``k + 1`` updates as the update ``w_{k+1} - w0``, and batchnorm's
running statistics after step ``k``'s training forward pass as they are.
Each ``w_k`` comes from replaying ``k`` optimiser steps from ``w0`` in one ``train_steps`` call
(one optimiser state, and the learning-rate schedule of a run's first epoch, as in training):
K(K+1)/2 steps in all, which for the few steps a locator needs costs less than a process
start.

Keys of ``parity.npz``: ``step{k}/loss``, ``step{k}/forward/<layer>``,
``step{k}/grad_input/<layer>``, ``step{k}/grad/<tensor>``, ``step{k}/statistics/<tensor>``
(running statistics) and ``step{k+1}/update/<tensor>`` (trainable tensors).
"""

from __future__ import annotations

import numpy as np

from cnn_common.batches import epoch_batches
from cnn_common.data import training_data
from cnn_common.events import EventCallback
from cnn_common.files import atomic_write_npz
from cnn_common.spec import layers
from cnn_common.weights import init_weights
from compare.engine import registry
from compare.engine.layout import PARITY_RECORD
from compare.parity.job import ParityJob


def run_parity_task(job: ParityJob, on_event: EventCallback | None = None) -> None:
    """Record the trace of every step and the update after it into ``parity.npz``."""
    model_spec, train_spec = job.specs()
    framework = registry.load(job.framework)
    data = training_data(job.dataset, train_spec, root=job.data_dir)
    index_batches = epoch_batches(len(data.x_train), train_spec.batch_size, train_spec.seed, 0)
    batches = [(data.x_train[i], data.y_train[i]) for i in index_batches[: job.steps]]
    start = init_weights(model_spec, train_spec.seed, train_spec.dtype)
    # batchnorm's running statistics; every other tensor is compared as an update (a frozen
    # layer's must stay 0 in every framework)
    state = {tensor for layer in layers(model_spec) for tensor in layer.state}
    arrays: dict[str, np.ndarray] = {}
    for k in range(job.steps + 1):
        model = framework.build(model_spec, train_spec.dtype)
        framework.set_weights(model, start)
        if k:
            framework.train_steps(model, train_spec, batches[:k], len(index_batches))
            for name, value in framework.get_weights(model).items():
                if name not in state:
                    arrays[f"step{k}/update/{name}"] = np.asarray(value) - start[name]
                else:  # made by step k - 1's training forward pass
                    arrays[f"step{k - 1}/statistics/{name}"] = np.asarray(value)
        if k < job.steps:
            x, y = batches[k]
            for key, value in framework.layer_trace(model, x, y).items():
                arrays[f"step{k}/{key}"] = np.asarray(value)
    atomic_write_npz(job.path / PARITY_RECORD, arrays)
