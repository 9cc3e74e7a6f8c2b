"""The cnn-rosetta CNN in Keras 3 (TensorFlow backend by default; torch and jax when installed).

Public functions (the contract shared with ``numpy_cnn`` and ``lightning_cnn``): ``build``,
``train``, ``evaluate``, ``predict``, ``predict_logits``, ``feature_maps``, ``get_weights``,
``set_weights``, ``loss_and_grads``, ``train_steps``, ``save``, ``load``.

Keras fixes its backend when it is first imported, from ``KERAS_BACKEND``; this package
therefore imports keras only when one of those functions is first looked up, so that
``keras-cnn train --backend torch`` can set the variable first.

Shapes: N batch, H, W, C channels, KH, KW kernel, F filters, K classes.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODEL = (
    "build",
    "evaluate",
    "predict",
    "predict_logits",
    "feature_maps",
    "get_weights",
    "set_weights",
    "loss_and_grads",
    "train_steps",
    "save",
    "load",
)
_TRAIN = ("train",)

__all__ = [*_MODEL, *_TRAIN]


def __getattr__(name: str) -> Any:
    """Import keras (through ``model`` or ``train``) on the first use of a public function."""
    if name in _MODEL:
        return getattr(importlib.import_module("keras_cnn.model"), name)
    if name in _TRAIN:
        return getattr(importlib.import_module("keras_cnn.train"), name)
    raise AttributeError(f"module 'keras_cnn' has no attribute {name!r}")
