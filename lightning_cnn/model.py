"""The contract (``docs/design.md``) for the Lightning CNN: the model is a ``LitCNN``.

Lightning trains PyTorch's network, so everything that works on the network itself (predict,
weights, gradients, a fresh optimiser's steps) is ``pytorch_cnn.model``'s, which accepts the
``LitCNN`` that holds the network. What is Lightning's own is the model object (``build`` gives
a ``LitCNN``) and its file: a Lightning checkpoint (``save`` / ``load``), which
``LitCNN.load_from_checkpoint`` reads as well.
"""

from __future__ import annotations

import io
from pathlib import Path

import lightning as L
import torch
from torch import nn

from cnn_common.errors import DataError
from cnn_common.files import atomic_write_bytes
from cnn_common.spec import ModelSpec, TrainSpec
from lightning_cnn.module import LitCNN
from pytorch_cnn.model import (
    evaluate,
    feature_maps,
    get_weights,
    layer_trace,
    loss_and_grads,
    predict,
    predict_logits,
    set_weights,
    train_steps,
)
from pytorch_cnn.network import CNN

__all__ = [
    "build",
    "evaluate",
    "feature_maps",
    "get_weights",
    "layer_trace",
    "load",
    "loss_and_grads",
    "predict",
    "predict_logits",
    "save",
    "set_weights",
    "train_steps",
]


def build(spec: ModelSpec, dtype: str = "float32", *, seed: int = 0) -> LitCNN:
    """A ``LitCNN`` for ``spec`` in ``dtype`` with PyTorch's default initialisers drawn from
    the ``init`` stream of ``seed`` (the same weights ``pytorch_cnn.build`` gives)."""
    return LitCNN(spec, TrainSpec(dtype=dtype, seed=seed))


def save(model: nn.Module, path: str | Path) -> None:
    """Write ``model`` (a ``LitCNN`` or a bare ``CNN``) as a checkpoint that
    ``LitCNN.load_from_checkpoint`` reads: its state dict and hyperparameters; atomic."""
    if isinstance(model, CNN):
        dtype = "float64" if next(model.parameters()).dtype == torch.float64 else "float32"
        lit = LitCNN(model.spec, TrainSpec(dtype=dtype))
        lit.model.load_state_dict(model.state_dict())
        model = lit
    if not isinstance(model, LitCNN):
        raise TypeError(f"expected a LitCNN or CNN, got {type(model).__name__}")
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": L.__version__,
    }
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load(path: str | Path) -> LitCNN:
    """Read a checkpoint written by ``save`` or by a Trainer, on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint {path} does not exist", "check the path")
    try:
        return LitCNN.load_from_checkpoint(path, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any failure to read means a bad file
        raise DataError(
            f"{path} is not a LitCNN checkpoint ({type(exc).__name__}: {exc})",
            "write it with lightning_cnn.save, a Trainer, or `cnn-compare convert`",
        ) from None
