"""The cnn-rosetta CNN in PyTorch Lightning, from the shared spec.

- ``LitCNN`` (``module.py``): the ``LightningModule`` to reuse; it holds PyTorch's network
  (``pytorch_cnn.network.CNN``, re-exported by ``network.py``) and steps PyTorch's optimisers
  (``optim.py``).
- ``ImageDataModule`` (``datamodule.py``): any registry dataset, the shared split, batch order
  (``EpochBatchSampler``, sharded under DDP) and augmentation; ``MNISTDataModule`` is its first
  name, kept for existing code.
- The contract (``model.py``, ``training.py``; ``docs/design.md``), the declaration
  (``framework.py``), the command line (``__main__.py``, ``cli.py`` for the LightningCLI),
  callbacks and loggers (``callbacks.py``).

Letters: N batch, C channels, H, W spatial, F filters, K classes. Never imports TensorFlow or
keras. Importing the package imports nothing else: Lightning loads on first use of a name.
"""

from cnn_common.framework import CONTRACT, lazy_exports
from cnn_common.machine import set_openmp_wait_policy

lazy_exports(
    __name__,
    {
        **{name: "lightning_cnn.model" for name in CONTRACT if name != "train"},
        "train": "lightning_cnn.training",
        "phase_times": "lightning_cnn.training",
        "LitCNN": "lightning_cnn.module",
        "ImageDataModule": "lightning_cnn.datamodule",
        "MNISTDataModule": "lightning_cnn.datamodule",  # ImageDataModule's first name
        "EpochBatchSampler": "lightning_cnn.datamodule",
    },
    before_import=set_openmp_wait_policy,  # before torch loads OpenMP
)
