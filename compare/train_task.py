"""A worker's training task: train one framework on one seed, then keep what the report needs.

After ``train`` has written the run record and the weights, the feature maps of a few test
images and the misclassified test images are saved beside them (``feature_maps.npz``), so the
report is rendered from the folder alone, without the dataset or the framework.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cnn_common.data import training_data
from cnn_common.events import EventCallback
from cnn_common.files import atomic_write_npz
from cnn_common.weights import init_weights, load_weights
from compare import registry
from compare.jobs import TrainJob
from compare.layout import FEATURES_FILE, WEIGHTS_FILE

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
    start = None
    if job.init == "shared":
        start = init_weights(model_spec, train_spec.seed, train_spec.dtype)
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
    )
    # Feature maps of the trained model, rebuilt from the canonical weights it wrote.
    weights, _, _ = load_weights(job.path / WEIGHTS_FILE)
    model = framework.build(model_spec, train_spec.dtype)
    framework.set_weights(model, weights)
    images = data.x_test[:N_FEATURE_IMAGES]
    maps = framework.feature_maps(model, images)
    predictions = np.asarray(result.predictions)
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
