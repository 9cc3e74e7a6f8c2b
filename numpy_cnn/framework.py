"""numpy_cnn's declaration: what compare and the report need to know about it.

Registered in ``pyproject.toml`` under the ``cnn_rosetta.frameworks`` entry points.
"""

from cnn_common.framework import FrameworkInfo
from numpy_cnn.step import PIECE

FRAMEWORK = FrameworkInfo(
    name="numpy",
    label="NumPy (from scratch)",
    package="numpy_cnn",
    requires=("numpy",),
    extra="",
    native={
        "adam_epsilon": "none of its own: follows the spec",
        "init": "none of its own: the canonical Glorot-uniform kernels, zero biases",
        "layout": "NHWC, conv kernel (KH, KW, C, F)",
        "flatten": "H, W, C",
        "same_padding": "explicit pads from the spec (TensorFlow's placement)",
        "batch_order": "its own permutation of the images each epoch (np.random)",
        "loss_logging": "per step",
        "accuracy": "micro (correct / total)",
        "float64": "float64 throughout",
        "kernels": "NumPy + BLAS GEMM (im2col), one batch shard per core",
    },
    model_suffix=".npz",
    native_init=False,
    default=True,
    order=10,
    activation_images=PIECE,  # forward and backward a piece of the batch at a time, per thread
    keeps_im2col=True,
)
