"""A worker's conversion task: canonical weights into this framework's own file, read back.

The weights go in through the contract (``build`` + ``set_weights``), out through the
framework's own writer (``save``) and back through its own reader (``load``), so the logits of
the loaded model check the whole round trip, file format included. ``logits.npz`` holds
``source`` (the logits of the weights as set: the source framework's own, when this is it) and
``converted`` (the logits of the file read back), each ``(N, K)`` for the first N test images.
"""

from __future__ import annotations

import numpy as np

from cnn_common.data import training_data
from cnn_common.events import EventCallback
from cnn_common.files import atomic_write_npz
from cnn_common.weights import load_weights
from compare.convert.job import ConvertJob
from compare.engine import registry
from compare.engine.layout import CONVERT_RECORD


def run_convert_task(job: ConvertJob, on_event: EventCallback | None = None) -> None:
    model_spec, train_spec = job.specs()
    framework = registry.load(job.framework)
    data = training_data(job.dataset, train_spec, root=job.data_dir, eval_size=job.images)
    weights, _, _ = load_weights(job.weights)
    model = framework.build(model_spec, train_spec.dtype)
    framework.set_weights(model, weights)
    arrays: dict[str, np.ndarray] = {}
    if job.source:
        arrays["source"] = np.asarray(framework.predict_logits(model, data.x_test))
    if job.model_file is not None:
        framework.save(model, job.model_file)
        loaded = framework.load(job.model_file)
        arrays["converted"] = np.asarray(framework.predict_logits(loaded, data.x_test))
    atomic_write_npz(job.path / CONVERT_RECORD, arrays)
