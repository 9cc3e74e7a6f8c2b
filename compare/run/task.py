"""A worker's training task: train one framework on one seed, then keep what the report needs.

After ``train`` has written the run record and the weights, the feature maps of a few test
images and the misclassified test images are saved beside them (``feature_maps.npz``), so the
report is rendered from the folder alone, without the dataset or the framework.
"""

from __future__ import annotations

import dataclasses
from types import ModuleType

import numpy as np

from cnn_common.data import Data, training_data
from cnn_common.events import EventCallback
from cnn_common.files import atomic_write_npz
from cnn_common.machine import is_main_process
from cnn_common.spec import ModelSpec, TrainSpec, spec_from_dict
from cnn_common.transfer import transfer_weights
from cnn_common.weights import Weights, init_weights, load_weights
from compare.engine import registry
from compare.engine.layout import FEATURES_FILE, WEIGHTS_FILE
from compare.run.job import INITS, TrainJob

N_FEATURE_IMAGES = 4  # test images whose feature maps the report shows
N_MISCLASSIFIED = 16  # misclassified test images kept for the report


def run_train_task(job: TrainJob, on_event: EventCallback | None) -> None:
    """Train ``job.framework``; leave run.json, the weights and the feature maps in job.out."""
    model_spec, train_spec = job.specs()
    train_spec = dataclasses.replace(train_spec, seed=job.seed)
    framework = registry.load(job.framework)
    data = training_data(
        job.dataset,
        train_spec,
        root=job.data_dir,
        subset_size=job.subset,
        eval_size=job.eval_subset,
    )
    start = (
        transfer_weights(model_spec, train_spec, job.init_from)
        if job.init_from
        else initial_weights(job.init, model_spec, train_spec)
    )
    result = framework.train(
        model_spec,
        train_spec,
        data,
        job.path,
        init_weights=start,
        on_event=on_event,
        resume=job.resume,
        device=job.device,
        progress=False,
        native=job.native,
        name=job.framework,
        devices=job.devices if registry.get(job.framework).data_parallel else 1,
    )
    if job.feature_maps and is_main_process():  # DDP runs this task in every process
        # the model as it trained: native conventions (a batchnorm's epsilon) are in the record
        trained, _ = spec_from_dict({"model": result.model_spec})
        save_feature_maps(job, trained, framework, data, np.asarray(result.predictions))


def flip_last_bit(weights: Weights) -> Weights:
    """``weights`` with the last bit of ``conv1.kernel[0, 0, 0, 0]`` (the first weight)
    flipped: the smallest change a starting point can take (a noise floor)."""
    changed = {name: value.copy() for name, value in weights.items()}
    first = changed[next(iter(changed))]
    bits = first.view(np.int32 if first.dtype == np.float32 else np.int64).reshape(-1)
    bits[0] ^= 1
    return changed


def initial_weights(init: str, model_spec: ModelSpec, train_spec: TrainSpec) -> Weights | None:
    """The starting weights of ``init`` (None: the framework initialises)."""
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose from {INITS}")
    if init == "native":
        return None
    weights = init_weights(model_spec, train_spec.seed, train_spec.dtype)
    return flip_last_bit(weights) if init == "shared-ulp" else weights


def save_feature_maps(
    job: TrainJob, model_spec: ModelSpec, framework: ModuleType, data: Data, predictions: np.ndarray
) -> None:
    """Feature maps of a few test images and the misclassified ones, beside the run (of the
    model ``model_spec``, the one the run trained)."""
    _, train_spec = job.specs()
    # Feature maps of the trained model, rebuilt from the canonical weights it wrote.
    weights, _, _ = load_weights(job.path / WEIGHTS_FILE)
    model = framework.build(model_spec, train_spec.dtype)
    framework.set_weights(model, weights)
    images = data.x_test[:N_FEATURE_IMAGES]
    maps = framework.feature_maps(model, images)
    wrong = np.flatnonzero(predictions != data.y_test)[:N_MISCLASSIFIED]
    atomic_write_npz(
        job.path / FEATURES_FILE,
        {
            "images": images,
            **{f"map/{name}": value for name, value in maps.items()},
            "wrong/index": wrong,
            "wrong/images": data.x_test[wrong],
            "wrong/predicted": predictions[wrong],
            "wrong/true": data.y_test[wrong],
        },
    )
