"""The example specs of the model families (``examples/*_small.yaml``) and the weights and
images the contract tests give them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnn_common.spec import ModelSpec
from cnn_common.spec_files import load_spec
from cnn_common.weights import init_weights

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FAMILIES: dict[str, ModelSpec] = {
    name: load_spec(EXAMPLES / f"{name}.yaml")[0]
    for name in ("resnet_small", "vgg_small", "mobilenet_small")
}
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
