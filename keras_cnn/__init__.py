"""The cnn-rosetta CNN in Keras 3 (TensorFlow backend by default; torch and jax too).

Modules, as in every framework package: ``network`` (the ``keras.Sequential`` of the spec, its
loss and step metric), ``model`` (the contract), ``optim`` (the spec's optimisers in both Adam
epsilon conventions), ``train`` (``fit`` on the shared batch order, checkpoints, resume),
``framework`` (the declarations: keras, keras-torch, keras-jax), ``__main__`` (the command
line).

Keras fixes its backend when it is first imported, from ``KERAS_BACKEND``; this package
therefore imports keras only when one of its functions is first used, so that
``keras-cnn train --backend torch`` (or a worker of ``keras-torch``) can set it first.

Shapes: N batch, H, W, C channels, KH, KW kernel, F filters, K classes.
"""

from cnn_common.framework import CONTRACT, lazy_exports

lazy_exports(
    __name__,
    {
        **{name: "keras_cnn.model" for name in CONTRACT if name != "train"},
        "train": "keras_cnn.train",
    },
)
