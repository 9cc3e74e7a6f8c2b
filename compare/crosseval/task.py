"""A worker's cross-evaluation task: other frameworks' trained weights, run in this one.

Every framework's final weights are in the canonical layout (``weights.safetensors``), so any
framework can load any other's. The test-set logits of each are written to ``logits.npz``
(``logits/<source framework>``, ``(N, K)``); the parent compares the predictions. Each
source's weights run in the model its run trained (the spec in its run record): a run with
native conventions (``cnn-compare run --native``) normalises with its own batchnorm epsilon.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cnn_common.data import load_test_set
from cnn_common.events import EventCallback
from cnn_common.files import atomic_write_npz
from cnn_common.results import RunResult
from cnn_common.spec import ModelSpec, spec_from_dict
from cnn_common.weights import load_weights
from compare.crosseval.job import CrossEvalJob
from compare.engine import registry
from compare.engine.layout import CROSSEVAL_RECORD, RESULT_FILE


def trained_spec(weights: Path, default: ModelSpec) -> ModelSpec:
    """The model spec of the run whose ``weights`` these are (its record beside them), or
    ``default`` where there is no record."""
    record = weights.with_name(RESULT_FILE)
    if not record.is_file():
        return default
    return spec_from_dict({"model": RunResult.from_json(record).model_spec})[0]


def run_crosseval_task(job: CrossEvalJob, on_event: EventCallback | None = None) -> None:
    model_spec, train_spec = job.specs()
    framework = registry.load(job.framework)
    x_test, y_test = load_test_set(
        job.dataset, train_spec.dtype, root=job.data_dir, eval_size=job.eval_subset
    )
    models: dict[ModelSpec, Any] = {}  # one model per spec the sources trained
    arrays = {"labels": y_test}
    for source, path in job.weights.items():
        trained = trained_spec(Path(path), model_spec)
        if trained not in models:
            models[trained] = framework.build(trained, train_spec.dtype)
        model = models[trained]
        weights, _, _ = load_weights(path)
        framework.set_weights(model, weights)
        arrays[f"logits/{source}"] = np.asarray(framework.predict_logits(model, x_test))
    atomic_write_npz(job.path / CROSSEVAL_RECORD, arrays)
