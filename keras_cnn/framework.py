"""keras_cnn's declarations: Keras 3 on each of its backends is a framework of its own.

One package, three frameworks: ``keras`` (TensorFlow backend), ``keras-torch`` and
``keras-jax``. Keras reads its backend once, when it is first imported, so each runs in a
process whose ``KERAS_BACKEND`` its declaration sets. Registered in ``pyproject.toml`` under
the ``cnn_rosetta.frameworks`` entry points.
"""

from cnn_common.framework import FrameworkInfo

# The packages whose versions a run record lists, per backend.
BACKEND_PACKAGES = {
    "tensorflow": ("tensorflow", "tensorflow-cpu"),
    "torch": ("torch",),
    "jax": ("jax", "jaxlib"),
}


# Keras 3's type promotion (keras.backend.result_type) turns float64 into float32 on every
# backend but TensorFlow, "to be aligned with JAX's default": a float64 model on torch or jax
# computes its matmuls (the dense layers) in float32.
FLOAT64 = {
    "tensorflow": (True, "float64 throughout"),
    "torch": (False, "dense layers in float32: Keras's type promotion maps float64 to float32"),
    "jax": (False, "float32: Keras's type promotion maps float64 to float32 (jax without x64)"),
}


def _keras(name: str, backend: str, label: str, kernels: str, order: int) -> FrameworkInfo:
    return FrameworkInfo(
        name=name,
        label=label,
        package="keras_cnn",
        requires=("keras", backend),
        extra="keras" if backend == "tensorflow" else f"keras,{backend}",
        native={
            "adam_epsilon": "1e-7, added to sqrt(v) before bias correction; "
            "keras.optimizers.Adam takes beta^t from float32-rounded betas (a relative 6.7e-6 "
            "on every float64 update)",
            "init": "Glorot-uniform kernels, zero biases (Keras's own RNG)",
            "layout": "NHWC, conv kernel (KH, KW, C, F)",
            "flatten": "H, W, C",
            "same_padding": "TensorFlow's: the odd pixel at bottom/right",
            "batch_order": "fit(shuffle=True) reshuffles the batches each epoch",
            "loss_logging": "running mean over the epoch",
            "accuracy": "micro (correct / total)",
            "kernels": kernels,
            "float64": FLOAT64[backend][1],
        },
        model_suffix=".keras",
        native_epsilon=(1e-7, "keras"),
        float64_exact=FLOAT64[backend][0],
        env={"KERAS_BACKEND": backend},
        default=backend == "tensorflow",
        order=order,
    )


KERAS = _keras("keras", "tensorflow", "Keras 3", "TensorFlow/oneDNN (or cuDNN)", 20)
KERAS_TORCH = _keras(
    "keras-torch", "torch", "Keras 3 (torch backend)", "PyTorch/oneDNN (or cuDNN)", 21
)
KERAS_JAX = _keras("keras-jax", "jax", "Keras 3 (jax backend)", "XLA (jax)", 22)

BY_BACKEND = {"tensorflow": KERAS, "torch": KERAS_TORCH, "jax": KERAS_JAX}


def framework_for_backend(backend: str) -> FrameworkInfo:
    """The framework Keras is on this backend (``keras.backend.backend()``)."""
    return BY_BACKEND[backend]
