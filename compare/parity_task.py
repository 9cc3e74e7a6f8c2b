"""A worker's parity task: one framework, the shared weights, the shared batches, K steps.

It records, for each of the first K batches of epoch 0's shared order, the logits, the loss and
the gradients at the shared initial weights (a like-for-like comparison of forward and
backward), and its own weights after ``k = 1..K`` optimiser steps from those weights, as the
update ``w_k - w_0`` (which compares the optimisers, and the drift rounding adds step by step).
"""

from __future__ import annotations

import numpy as np

from cnn_common.batches import epoch_batches
from cnn_common.data import training_data
from cnn_common.files import atomic_write_npz
from cnn_common.weights import init_weights
from compare import registry
from compare.jobs import ParityJob
from compare.layout import PARITY_RECORD


def run_parity_task(job: ParityJob) -> None:
    """Record ``step{k}/logits|loss|grad/<tensor>|weights/<tensor>`` into ``parity.npz``."""
    model_spec, train_spec = job.specs()
    framework = registry.load(job.framework)
    data = training_data(job.dataset, train_spec, root=job.data_dir)
    index_batches = epoch_batches(len(data.x_train), train_spec.batch_size, train_spec.seed, 0)
    batches = [(data.x_train[i], data.y_train[i]) for i in index_batches[: job.steps]]
    start = init_weights(model_spec, train_spec.seed, train_spec.dtype)
    arrays: dict[str, np.ndarray] = {}
    model = framework.build(model_spec, train_spec.dtype)
    framework.set_weights(model, start)
    for k, (x, y) in enumerate(batches):  # forward and backward at the shared weights
        arrays[f"step{k}/logits"] = np.asarray(framework.predict_logits(model, x))
        loss, grads = framework.loss_and_grads(model, x, y)
        arrays[f"step{k}/loss"] = np.asarray(loss, dtype=np.float64)
        for name, value in grads.items():
            arrays[f"step{k}/grad/{name}"] = np.asarray(value)
    for k in range(1, job.steps + 1):
        # A fresh model and optimiser replayed over k batches: the optimiser state stays inside
        # one train_steps call, as it does in training.
        model = framework.build(model_spec, train_spec.dtype)
        framework.set_weights(model, start)
        framework.train_steps(model, train_spec, batches[:k])
        for name, value in framework.get_weights(model).items():
            arrays[f"step{k}/weights/{name}"] = np.asarray(value) - start[name]  # the update
    atomic_write_npz(job.path / PARITY_RECORD, arrays)
