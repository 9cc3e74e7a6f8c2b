"""A worker's cross-evaluation task: other frameworks' trained weights, run in this one.

Every framework's final weights are in the canonical layout (``weights.safetensors``), so any
framework can load any other's. The test-set logits of each are written to ``logits.npz``
(``logits/<source framework>``, ``(N, K)``); the parent compares the predictions.
"""

from __future__ import annotations

import numpy as np

from cnn_common.data import load_test_set
from cnn_common.events import EventCallback
from cnn_common.files import atomic_write_npz
from cnn_common.weights import load_weights
from compare.crosseval.job import CrossEvalJob
from compare.engine import registry
from compare.engine.layout import CROSSEVAL_RECORD


def run_crosseval_task(job: CrossEvalJob, on_event: EventCallback | None = None) -> None:
    model_spec, train_spec = job.specs()
    framework = registry.load(job.framework)
    x_test, y_test = load_test_set(
        job.dataset, train_spec.dtype, root=job.data_dir, eval_size=job.eval_subset
    )
    model = framework.build(model_spec, train_spec.dtype)
    arrays = {"labels": y_test}
    for source, path in job.weights.items():
        weights, _, _ = load_weights(path)
        framework.set_weights(model, weights)
        arrays[f"logits/{source}"] = np.asarray(framework.predict_logits(model, x_test))
    atomic_write_npz(job.path / CROSSEVAL_RECORD, arrays)
