"""keras_cnn's declarations: Keras 3 on each of its backends is a framework of its own.

One package, three frameworks: ``keras`` (TensorFlow backend), ``keras-torch`` and
``keras-jax``. Keras reads its backend once, when it is first imported, so each runs in a
process whose ``KERAS_BACKEND`` its declaration sets. Registered in ``pyproject.toml`` under
the ``cnn_rosetta.frameworks`` entry points.
"""

from dataclasses import dataclass

from cnn_common.framework import FrameworkInfo


@dataclass(frozen=True)
class Backend:
    """What differs between the Keras backends this package runs on."""

    framework: str  # the framework Keras is on this backend: keras, keras-torch, keras-jax
    label: str  # in the report
    module: str  # the module the backend needs (besides keras)
    versioned: tuple[str, ...]  # the distributions whose versions a run record lists
    kernels: str  # what computes the layers
    float64_exact: bool
    float64: str  # the float64 topic of the differences table
    order: int  # position in tables and figures


# The one table of Keras backends, keyed by ``KERAS_BACKEND`` (``keras.backend.backend()``).
# Keras 3's type promotion (keras.backend.result_type) turns float64 into float32 on every
# backend but TensorFlow, "to be aligned with JAX's default": a float64 model on torch or jax
# computes its matmuls (the dense layers) in float32.
BACKEND_TABLE = {
    "tensorflow": Backend(
        "keras",
        "Keras 3",
        "tensorflow",
        ("tensorflow", "tensorflow-cpu"),
        "TensorFlow/oneDNN (or cuDNN)",
        True,
        "float64 throughout",
        20,
    ),
    "torch": Backend(
        "keras-torch",
        "Keras 3 (torch backend)",
        "torch",
        ("torch",),
        "PyTorch/oneDNN (or cuDNN)",
        False,
        "dense layers in float32: Keras's type promotion maps float64 to float32",
        21,
    ),
    "jax": Backend(
        "keras-jax",
        "Keras 3 (jax backend)",
        "jax",
        ("jax", "jaxlib"),
        "XLA (jax)",
        False,
        "float32: Keras's type promotion maps float64 to float32 (jax without x64)",
        22,
    ),
}
DEFAULT_BACKEND = "tensorflow"  # Keras's own default, and the default --frameworks' keras


def _keras(backend: str, row: Backend) -> FrameworkInfo:
    return FrameworkInfo(
        name=row.framework,
        label=row.label,
        package="keras_cnn",
        requires=("keras", row.module),
        extra="keras" if backend == DEFAULT_BACKEND else f"keras,{backend}",
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
            "kernels": row.kernels,
            "float64": row.float64,
        },
        model_suffix=".keras",
        native_epsilon=(1e-7, "keras"),
        float64_exact=row.float64_exact,
        env={"KERAS_BACKEND": backend},
        default=backend == DEFAULT_BACKEND,
        order=row.order,
    )


BY_BACKEND = {backend: _keras(backend, row) for backend, row in BACKEND_TABLE.items()}
KERAS, KERAS_TORCH, KERAS_JAX = BY_BACKEND["tensorflow"], BY_BACKEND["torch"], BY_BACKEND["jax"]


def framework_for_backend(backend: str) -> FrameworkInfo:
    """The framework Keras is on this backend (``keras.backend.backend()``)."""
    return BY_BACKEND[backend]
