"""The cnn-rosetta CNN in Keras 3 (TensorFlow backend by default; torch and jax too).

Modules, as in every framework package: ``network`` (the ``keras.Sequential`` of a block-form
spec or the functional ``Network`` of a layer list, batchnorm as the spec states it, the loss
and step metric), ``model`` (the contract), ``gradients`` (the layer graph differentiated one
layer at a time on each backend), ``optim`` (the spec's optimisers in both Adam
epsilon conventions), ``training`` (``fit`` on the shared batch order, checkpoints, resume),
``framework`` (the declarations: keras, keras-torch, keras-jax), ``__main__`` (the command
line).

Keras fixes its backend when it is first imported, from ``KERAS_BACKEND``; this package
therefore imports keras only when one of its functions is first used, so that
``keras-cnn train --backend torch`` (or a worker of ``keras-torch``) can set it first.

Shapes: N batch, H, W, C channels, KH, KW kernel, F filters, K classes.
"""

import contextlib
import os
import sys
from collections.abc import Iterator

from cnn_common.framework import CONTRACT, lazy_exports
from cnn_common.gpu import start_xla_deterministic
from cnn_common.machine import set_openmp_wait_policy


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """File descriptor 2 sent to /dev/null for the block.

    TensorFlow's C++ side prints its start-up lines ("oneDNN custom operations are on", "All
    log messages before absl::InitializeLog()") straight to fd 2 while it loads, whatever
    ``TF_CPP_MIN_LOG_LEVEL`` says; turning oneDNN off would change the numerics. Only the
    import is silenced: an exception it raises is shown once fd 2 is back.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _import_keras() -> None:
    """Import keras (and its backend) once, before the first contract function is used; on
    the torch backend, OpenMP's wait policy is chosen first (``set_openmp_wait_policy``); on
    jax, XLA's deterministic GPU kernels, which it reads once (``start_xla_deterministic``)."""
    if "keras" not in sys.modules:
        if os.environ.get("KERAS_BACKEND") == "torch":
            set_openmp_wait_policy()
        if os.environ.get("KERAS_BACKEND") == "jax":
            start_xla_deterministic()
        with native_stderr_silenced():
            import keras  # noqa: F401


lazy_exports(
    __name__,
    {
        **{name: "keras_cnn.model" for name in CONTRACT if name != "train"},
        "train": "keras_cnn.training",
        "phase_times": "keras_cnn.training",
    },
    before_import=_import_keras,
)
