"""A worker's conversion task: canonical weights into this framework's own file, read back.

The weights go in through the contract (``build`` + ``set_weights``), out through the
framework's own writer (``save``) and back through its own reader (``load``), so the logits of
the loaded model check the whole round trip, file format included. ``logits.npz`` holds
``source`` (the logits of the weights as set: the source framework's own, when this is it) and
``converted`` (the logits of the file read back), each ``(N, K)`` for the first N test images.

For the deployment table (``job.deploy_repeats``), ``source`` covers the whole test set, and
``deployed`` (its logits) and ``timing.<figure>`` (0-d) time the file read back in this
framework (``compare.convert.deploy.timed``). The keras worker also writes the
LiteRT files (``compare.convert.litert.export``) from a float32 Keras model of the weights.
"""

from __future__ import annotations

import functools

import numpy as np

from cnn_common.data import training_data
from cnn_common.events import EventCallback
from cnn_common.files import atomic_write_npz
from cnn_common.weights import load_weights
from compare.convert import deploy, litert, quantize
from compare.convert.job import ConvertJob
from compare.engine import registry
from compare.engine.layout import CONVERT_RECORD


def run_convert_task(job: ConvertJob, on_event: EventCallback | None = None) -> None:
    model_spec, train_spec = job.specs()
    framework = registry.load(job.framework)
    data = training_data(job.dataset, train_spec, root=job.data_dir)
    x_test = data.x_test if job.deploy_repeats else data.x_test[: job.images]
    weights, _, _ = load_weights(job.weights)
    model = framework.build(model_spec, train_spec.dtype)
    framework.set_weights(model, weights)
    arrays: dict[str, np.ndarray] = {}
    if job.source:
        arrays["source"] = np.asarray(framework.predict_logits(model, x_test))
    if job.model_file is not None:
        framework.save(model, job.model_file)
        predict = functools.partial(framework.predict_logits, framework.load(job.model_file))
        if job.deploy_repeats:  # the whole test set predicted and timed; its head verified
            logits, timing = deploy.timed(predict, x_test, job.deploy_repeats)
            arrays["deployed"] = logits
            arrays |= {f"{deploy.TIMING}{key}": np.asarray(value) for key, value in timing.items()}
        else:
            logits = np.asarray(predict(x_test[: job.images]))
        arrays["converted"] = logits[: job.images]
    if job.litert_file or job.litert_int8_file:
        # LiteRT is float32 whatever the run's dtype, as onnxruntime's CPU Conv is
        keras_model = model
        if train_spec.dtype != litert.RUNTIME_DTYPE:
            keras_model = framework.build(model_spec, litert.RUNTIME_DTYPE)
            float_weights = {k: np.asarray(v, np.float32) for k, v in weights.items()}
            framework.set_weights(keras_model, float_weights)
        if job.litert_file:
            litert.export(keras_model, job.litert_file)
        if job.litert_int8_file:
            _, images = quantize.calibration_images(
                data.x_train, job.calibration, job.calibration_seed
            )
            litert.export(keras_model, job.litert_int8_file, calibration=images)
    atomic_write_npz(job.path / CONVERT_RECORD, arrays)
