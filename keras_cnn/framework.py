"""keras_cnn's declarations: Keras 3 on each of its backends is a framework of its own.

One package, three frameworks: ``keras`` (TensorFlow backend), ``keras-torch`` and
``keras-jax``. Keras reads its backend once, when it is first imported, so each runs in a
process whose ``KERAS_BACKEND`` its declaration sets. Registered in ``pyproject.toml`` under
the ``cnn_rosetta.frameworks`` entry points.
"""

from dataclasses import dataclass

from cnn_common.conventions import Convention
from cnn_common.framework import FrameworkInfo
from cnn_common.gpu import GPU_CONVENTIONS

DOCS = "https://keras.io/api"
BATCHNORM_DOCS = f"{DOCS}/layers/normalization_layers/batch_normalization/"
# What a Keras user gets without saying otherwise, on every backend (on a GPU, also the
# backend library's TF32 and determinism: ``_keras`` adds them).
CONVENTIONS = {
    "epsilon": Convention(
        {"epsilon": 1e-7, "epsilon_convention": "keras"},
        "keras.optimizers.Adam(epsilon=1e-7): w -= lr_t * m / (sqrt(v) + epsilon), "
        "lr_t = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)",
        f"{DOCS}/optimizers/adam/",
    ),
    "bn_momentum": Convention(
        {"momentum": 0.99, "momentum_convention": "keras"},
        "BatchNormalization(momentum=0.99): moving = moving * momentum + batch * (1 - momentum)",
        BATCHNORM_DOCS,
    ),
    "bn_epsilon": Convention(
        {"epsilon": 1e-3},
        "BatchNormalization(epsilon=1e-3): gamma * (x - mean) / sqrt(var + epsilon) + beta",
        BATCHNORM_DOCS,
    ),
    "bn_variance": Convention(
        {"variance": "biased"},
        "moving_var is updated with the batch's variance as it normalises with it (biased, "
        "keras.ops.moments)",
        BATCHNORM_DOCS,
    ),
    "frozen_bn": Convention(
        {"frozen_batchnorm": "inference"},
        "layer.trainable = False runs BatchNormalization in inference mode: moving mean and "
        "variance normalise, and nothing updates them",
        BATCHNORM_DOCS,
    ),
    "weight_decay": Convention(
        {"weight_decay_convention": "decoupled", "weight_decay_on": "all"},
        "Adam(weight_decay=wd): w = w - w * wd * lr before the update, on every trainable "
        "variable (exclude_from_weight_decay to spare some)",
        f"{DOCS}/optimizers/",
    ),
    "schedule": Convention(
        {"lr_interval": "step"},
        "a LearningRateSchedule is called with optimizer.iterations: the rate changes every step",
        f"{DOCS}/optimizers/learning_rate_schedules/",
    ),
}


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
        conventions={**CONVENTIONS, **GPU_CONVENTIONS[backend]},
        native_order_augments=False,  # fit(x, y, shuffle=True) has no per-batch hook
        float64_exact=row.float64_exact,
        deterministic_at_start=backend == "jax",  # XLA reads XLA_FLAGS once
        env={"KERAS_BACKEND": backend},
        default=backend == DEFAULT_BACKEND,
        order=row.order,
    )


BY_BACKEND = {backend: _keras(backend, row) for backend, row in BACKEND_TABLE.items()}
KERAS, KERAS_TORCH, KERAS_JAX = BY_BACKEND["tensorflow"], BY_BACKEND["torch"], BY_BACKEND["jax"]


def framework_for_backend(backend: str) -> FrameworkInfo:
    """The framework Keras is on this backend (``keras.backend.backend()``)."""
    return BY_BACKEND[backend]
