"""The example specs of the model families (``examples/*_small.yaml``), a small spec with
every layer kind (``KINDS``), one with frozen layers (``frozen_spec``), and the weights and
images the tests give them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnn_common.spec import LayerSpec, ModelSpec
from cnn_common.spec_files import load_spec
from cnn_common.weights import init_weights

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FAMILIES: dict[str, ModelSpec] = {
    name: load_spec(EXAMPLES / f"{name}.yaml")[0]
    for name in ("resnet_small", "vgg_small", "mobilenet_small")
}
# Every kind and option the layer list has, on a 9x9x2 image: a conv with bias and tanh, a
# Keras-convention batchnorm, a sigmoid layer, a grouped conv without bias, an add joining an
# earlier layer (its input read twice), average pooling with a window that leaves a row over,
# max-pooling, flatten, dense, dropout.
KINDS = ModelSpec(
    input_shape=(9, 9, 2),
    num_classes=3,
    layers=(
        LayerSpec("conv", name="c1", filters=4, kernel_size=3, padding="same", activation="tanh"),
        LayerSpec(
            "batchnorm",
            name="bn1",
            momentum=0.9,
            epsilon=1e-3,
            momentum_convention="keras",
            variance="biased",
        ),
        LayerSpec("activation", name="act1", activation="sigmoid"),
        LayerSpec("conv", name="g", filters=4, kernel_size=3, padding="same", groups=2, bias=False),
        LayerSpec("batchnorm", name="bn2"),
        LayerSpec("add", name="join", join="act1"),
        LayerSpec("activation", name="relu", activation="relu"),
        LayerSpec("avgpool", name="avg", pool_size=2),
        LayerSpec("conv", name="c2", filters=6, kernel_size=1, groups=2, activation="relu"),
        LayerSpec("maxpool", name="max", pool_size=2),
        LayerSpec("flatten"),
        LayerSpec("dense", units=5, activation="tanh"),
        LayerSpec("dropout", rate=0.5),
    ),
)


def frozen_spec(frozen_batchnorm: str) -> ModelSpec:
    """A frozen conv and batchnorm under a trained conv, batchnorm and the logits."""
    return ModelSpec(
        input_shape=(6, 6, 2),
        num_classes=3,
        layers=(
            LayerSpec("conv", name="c1", filters=4, kernel_size=3, padding="same", trainable=False),
            LayerSpec("batchnorm", name="bn1", trainable=False, frozen_batchnorm=frozen_batchnorm),
            LayerSpec("activation", name="relu1", activation="relu"),
            LayerSpec("conv", name="c2", filters=4, kernel_size=3, stride=2),
            LayerSpec("batchnorm", name="bn2"),
            LayerSpec("global_avgpool", name="pool"),
        ),
    )


# Where each kind of tensor is drawn from when it is no kernel: biases off zero (so no ReLU
# sits on its kink), batchnorm's scale and shift off the identity, running statistics off
# their initial 0 and 1 (so a framework that ignores or swaps them shows).
RANGES = {
    ".bias": (-0.1, 0.1),
    ".gamma": (0.5, 1.5),
    ".beta": (-0.2, 0.2),
    ".moving_mean": (-0.3, 0.3),
    ".moving_variance": (0.5, 2.0),
}


def family_weights(spec: ModelSpec, seed: int, dtype: str = "float32") -> dict[str, np.ndarray]:
    """Canonical weights: Glorot kernels (``init_weights``), every other tensor drawn from its
    ``RANGES`` entry."""
    rng = np.random.default_rng(seed)
    weights = init_weights(spec, seed, "float64")
    for name, value in weights.items():
        for suffix, (low, high) in RANGES.items():
            if name.endswith(suffix):
                weights[name] = rng.uniform(low, high, size=value.shape)
    return {name: value.astype(dtype) for name, value in weights.items()}


def random_images(spec: ModelSpec, n: int, seed: int, dtype: str = "float32") -> np.ndarray:
    """``n`` images ``(n, H, W, C)`` uniform in [0, 1]."""
    return np.random.default_rng(seed).uniform(0, 1, size=(n, *spec.input_shape)).astype(dtype)
