"""The cnn-rosetta CNN in plain PyTorch: an ``nn.Module`` from the spec and a hand-written loop.

Modules, as in every framework package: ``network`` (the ``CNN`` module), ``model`` (the
contract), ``optim`` (the spec's optimiser, Keras's Adam included), ``training`` (the loop,
checkpoints, resume), ``framework`` (the declaration), ``__main__`` (the command line).
Beside them: ``batching`` (the shared batches as tensors). ``lightning_cnn`` builds on this
package: the same network and optimiser, trained by a Lightning ``Trainer``.

Letters: N batch, C channels, H, W spatial, F filters, K classes. Never imports TensorFlow or
keras.
"""

from cnn_common.framework import CONTRACT, lazy_exports
from cnn_common.machine import set_openmp_wait_policy

lazy_exports(
    __name__,
    {
        **{name: "pytorch_cnn.model" for name in CONTRACT if name != "train"},
        "train": "pytorch_cnn.training",
        "phase_times": "pytorch_cnn.training",
        "CNN": "pytorch_cnn.network",
    },
    before_import=set_openmp_wait_policy,  # before torch loads OpenMP
)
