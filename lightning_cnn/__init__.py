"""The cnn-rosetta CNN in PyTorch Lightning, from the shared spec.

- ``LitCNN`` (``module.py``): the ``LightningModule`` to reuse; ``CNN`` (``model.py``): the plain
  ``nn.Module`` inside it.
- ``MNISTDataModule`` (``datamodule.py``): any registry dataset, the shared split, batch order
  (``EpochBatchSampler``, sharded under DDP) and augmentation.
- The contract of DESIGN.md: ``build``, ``train``, ``evaluate``, ``predict``,
  ``predict_logits``, ``feature_maps``, ``get_weights``/``set_weights``, ``loss_and_grads``,
  ``train_steps``, ``save``/``load``.
- ``plain_torch_train`` (``reference.py``): the same training as a plain PyTorch loop, the
  yardstick for parity and speed.

Letters: N batch, C channels, H, W spatial, F filters, K classes. Never imports TensorFlow or
keras.
"""

from lightning_cnn.datamodule import EpochBatchSampler, MNISTDataModule
from lightning_cnn.model import (
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
from lightning_cnn.module import LitCNN
from lightning_cnn.optim import KerasAdam, make_optimizer
from lightning_cnn.reference import PlainRun, plain_torch_train
from lightning_cnn.train import train

__all__ = [
    "CNN",
    "EpochBatchSampler",
    "KerasAdam",
    "LitCNN",
    "MNISTDataModule",
    "PlainRun",
    "build",
    "evaluate",
    "feature_maps",
    "get_weights",
    "load",
    "loss_and_grads",
    "make_optimizer",
    "plain_torch_train",
    "predict",
    "predict_logits",
    "save",
    "set_weights",
    "train",
    "train_steps",
]
