"""The CNN from scratch in NumPy: every layer's forward and backward pass written out.

Letters used in every shape: N images in a batch, H, W height and width, C channels,
KH, KW kernel height and width, F filters (output channels), Ho, Wo output height and width,
D, U a dense layer's inputs and units, K classes. Images are NHWC, conv kernels
``(KH, KW, C, F)``, dense kernels ``(D, U)``: the canonical layout of ``cnn_common.weights``.

Modules, as in every framework package: ``network`` (the CNN: forward with caches, backward in
reverse), ``model`` (the contract), ``optim`` (Adam in both epsilon conventions, SGD with
momentum), ``training`` (the training loop, checkpoints, resume), ``framework`` (the declaration),
``__main__`` (the command line). Beside them: ``ops``, ``pooling``, ``grouped`` and ``norm``
(the layers as forward/backward pairs with their plain-loop twins: convolution, activations,
dense, dropout, add; max-, average and global average pooling; grouped convolution;
batchnorm), ``fused`` (a convolution and its pooling as one operation), ``step`` (the training
step: pieces of a batch), ``parallel`` (the batch spread over the cores) and ``demo``
(walk-throughs).
"""

from cnn_common.framework import CONTRACT, lazy_exports

lazy_exports(
    __name__,
    {
        **{name: "numpy_cnn.model" for name in CONTRACT if name != "train"},
        "train": "numpy_cnn.training",
        "phase_times": "numpy_cnn.training",
        "CNN": "numpy_cnn.network",
    },
)
