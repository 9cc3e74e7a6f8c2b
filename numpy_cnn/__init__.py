"""The CNN from scratch in NumPy: every layer's forward and backward pass written out.

Letters used in every shape: N images in a batch, H, W height and width, C channels,
KH, KW kernel height and width, F filters (output channels), Ho, Wo output height and width,
D, U a dense layer's inputs and units, K classes. Images are NHWC, conv kernels
``(KH, KW, C, F)``, dense kernels ``(D, U)``: the canonical layout of ``cnn_common.weights``.

Modules: ``ops`` (forward/backward pairs and their plain-loop twins), ``optim`` (Adam in both
epsilon conventions, SGD with momentum), ``model`` (build a spec, the contract functions),
``train`` (the training loop, checkpoints, the run record), ``demo`` (walk-throughs).
"""

from numpy_cnn.model import (
    CNN,
    build,
    evaluate,
    feature_maps,
    get_weights,
    load,
    loss_and_grads,
    predict,
    predict_logits,
    save,
    set_weights,
    train_steps,
)
from numpy_cnn.train import train

__all__ = [
    "CNN",
    "build",
    "evaluate",
    "feature_maps",
    "get_weights",
    "load",
    "loss_and_grads",
    "predict",
    "predict_logits",
    "save",
    "set_weights",
    "train",
    "train_steps",
]
