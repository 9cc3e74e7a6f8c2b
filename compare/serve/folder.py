"""What the explorer shows of a results folder: each framework's model, its test images and
predictions, the curves, and the report's sections that the folder has.

Read once when the server starts, through the report's own reader
(``compare.report.collect``): each framework's run of the lowest seed is the model the page
computes with; every run's history and step losses make the curves; the test set is the one
the runs were evaluated on (``cnn_common.data.load_test_set``), so a test image's index is the
index into every run's ``predictions``.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnn_common.data import load_test_set
from cnn_common.errors import UserError
from cnn_common.metrics import confusion_matrix
from cnn_common.results import WEIGHTS_FILE, RunResult
from cnn_common.spec import ModelSpec, feature_map_layers, layers, spec_from_dict
from cnn_common.weights import Weights, load_weights
from compare.engine import features
from compare.report.collect import Collected, collect
from compare.report.render import section_html

# The report's sections the explorer shows, by the feature that makes them.
SECTION_FEATURES = ("stats", "ablate", "parity")


@dataclass
class Folder:
    """A results folder as the explorer reads it."""

    out: Path
    found: Collected
    spec: ModelSpec
    frameworks: list[str]  # with a finished run, in report order
    models: dict[str, Path]  # framework -> its lowest seed's weight file
    predictions: dict[str, np.ndarray]  # framework -> (N,) test predictions of that run
    x_test: np.ndarray  # (N, H, W, C) float32 in [0, 1]
    y_test: np.ndarray  # (N,)
    class_names: list[str]
    dataset: str

    @functools.cached_property
    def weights(self) -> dict[str, Weights]:
        """Each framework's canonical weights (what the kernel view multiplies)."""
        return {name: load_weights(path)[0] for name, path in self.models.items()}

    # ------------------------------------------------------------------ the page's data

    def summary(self) -> dict[str, Any]:
        """What the page needs first: frameworks, layers, classes, the test set's size."""
        unrolled = layers(self.spec)
        maps = feature_map_layers(self.spec)
        return {
            "folder": str(self.out),
            "dataset": self.dataset,
            "frameworks": self.frameworks,
            "classes": self.class_names,
            "test_images": int(len(self.y_test)),
            "input_shape": list(self.spec.input_shape),
            "maps": maps,
            "layers": [
                {"name": layer.name, "kind": layer.kind, "inputs": list(layer.inputs)}
                for layer in unrolled
            ],
            "accuracy": {
                name: float(np.mean(self.predictions[name] == self.y_test))
                for name in self.frameworks
            },
        }

    def test_image(self, index: int) -> tuple[np.ndarray, int]:
        """Test image ``index`` ``(H, W, C)`` and its label; an index out of range is a
        ``UserError``."""
        if not 0 <= index < len(self.y_test):
            raise UserError(
                f"test image {index} does not exist", f"use 0 to {len(self.y_test) - 1}"
            )
        return self.x_test[index], int(self.y_test[index])

    def lists(self) -> dict[str, Any]:
        """Index lists: each framework's misclassified test images, its confusion matrix with
        the images of each cell, and the images on which the frameworks disagree."""
        stacked = np.stack([self.predictions[name] for name in self.frameworks])  # (F, N)
        disagree = np.nonzero((stacked != stacked[0]).any(axis=0))[0]
        k = len(self.class_names)
        per_framework = {}
        for name in self.frameworks:
            predicted = self.predictions[name]
            missed = np.nonzero(predicted != self.y_test)[0]
            cells: dict[str, list[int]] = {}
            for index in missed:
                cells.setdefault(f"{self.y_test[index]},{predicted[index]}", []).append(int(index))
            per_framework[name] = {
                "misclassified": missed.tolist(),
                "confusion": confusion_matrix(self.y_test, predicted, k).tolist(),
                "cells": cells,
            }
        return {
            "disagree": [
                {
                    "index": int(i),
                    "label": int(self.y_test[i]),
                    "predictions": {n: int(self.predictions[n][i]) for n in self.frameworks},
                }
                for i in disagree
            ],
            "frameworks": per_framework,
        }

    def curves(self) -> list[dict[str, Any]]:
        """Every run of the frameworks shown (every seed): per-epoch history, per-step losses."""
        return [
            {
                "framework": run.framework,
                "seed": run.train_spec.get("seed", 0),
                "epochs": [h.epoch for h in run.history],
                "train_loss": [h.train_loss for h in run.history],
                "val_loss": [h.val_loss for h in run.history],
                "train_accuracy": [h.train_accuracy for h in run.history],
                "val_accuracy": [h.val_accuracy for h in run.history],
                "step_losses": list(run.step_losses or []),
            }
            for run in self.found.runs
            if run.framework in self.frameworks
        ]

    def sections(self) -> list[dict[str, str]]:
        """The statistics, ablation and parity sections of the report, as HTML, where the
        folder has what they need."""
        shown = []
        registered = features.features()
        with tempfile.TemporaryDirectory(prefix="cnn-serve-") as figures:  # inlined as base64
            for name in SECTION_FEATURES:
                feature = registered.get(name)
                for _, function in feature.sections if feature else ():
                    for section in features.resolve(function)(self.found, Path(figures)):
                        shown.append({"title": section.title, "html": section_html(section)})
        return shown


def load_folder(
    out: Path, frameworks: list[str] | None = None, data_dir: str | None = None
) -> Folder:
    """Read ``out`` (a ``cnn-compare run`` folder) for the explorer; ``frameworks`` limits it
    to those (each must have a finished run). A folder without a finished run, or with runs
    of different specs, is a ``UserError``."""
    found = collect(out)
    firsts = {run.framework: (run, path) for run, path in found.first_seeds()}
    if not firsts:
        raise UserError(
            f"{out} has no finished run", "train one first: cnn-compare run --out " + str(out)
        )
    chosen = frameworks or list(firsts)
    missing = [name for name in chosen if name not in firsts]
    if missing:
        raise UserError(
            f"{out} has no finished run of {', '.join(missing)}",
            f"choose from {', '.join(firsts)}",
        )
    run0: RunResult = firsts[chosen[0]][0]
    spec, _ = spec_from_dict({"model": run0.model_spec})
    for name in chosen:
        if firsts[name][0].model_spec != run0.model_spec:
            raise UserError(
                f"the runs in {out} do not share one model spec ({name} differs)",
                "serve a folder made by one cnn-compare run",
            )
    eval_size = len(run0.predictions) or None
    x_test, y_test = load_test_set(run0.dataset, root=data_dir, eval_size=eval_size)
    return Folder(
        out=Path(out),
        found=found,
        spec=spec,
        frameworks=chosen,
        models={name: firsts[name][1] / WEIGHTS_FILE for name in chosen},
        predictions={name: np.asarray(firsts[name][0].predictions) for name in chosen},
        x_test=x_test,
        y_test=y_test,
        class_names=list(run0.class_names or [str(k) for k in range(spec.num_classes)]),
        dataset=run0.dataset,
    )
