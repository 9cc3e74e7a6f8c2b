"""keras_cnn against numpy_cnn on the same weights and the same batch: logits within 1e-5,
gradients within 1e-4 relative, and the same weights after a few optimiser steps."""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np
import pytest

import numpy_cnn
from cnn_common.batches import epoch_batches
from cnn_common.spec import ConvBlock, DenseLayer, ModelSpec, TrainSpec
from cnn_common.weights import init_weights


@pytest.fixture(scope="module")
def km() -> ModuleType:
    """keras_cnn.model, imported once conftest has set KERAS_HOME (keras writes there)."""
    pytest.importorskip("keras")
    return importlib.import_module("keras_cnn.model")


OTHER_SPECS = {
    "same-stride2-even-kernel": ModelSpec(
        input_shape=(14, 13, 2),
        conv=(
            ConvBlock(filters=6, kernel_size=4, stride=2, padding="same", pool_size=0),
            ConvBlock(filters=5, kernel_size=3, padding="same", activation="tanh"),
        ),
        dense=(DenseLayer(units=12, activation="sigmoid"), DenseLayer(units=8)),
        num_classes=6,
    ),
    "strided-pool": ModelSpec(
        input_shape=(17, 17, 3),
        conv=(ConvBlock(filters=8, kernel_size=3, stride=2, pool_size=3, pool_stride=2),),
        dense=(DenseLayer(units=16, activation="linear"),),
        num_classes=4,
    ),
}


def both_models(km: ModuleType, spec: ModelSpec, dtype: str = "float32"):
    weights = init_weights(spec, seed=11, dtype=dtype)
    # Non-zero biases, so a wrong bias gradient or layout cannot hide behind zeros.
    weights = {k: (v + 0.01 if k.endswith(".bias") else v) for k, v in weights.items()}
    keras_model, numpy_model = km.build(spec, dtype), numpy_cnn.build(spec, dtype)
    km.set_weights(keras_model, weights)
    numpy_cnn.set_weights(numpy_model, weights)
    return keras_model, numpy_model


def assert_parity(km: ModuleType, spec: ModelSpec, x: np.ndarray, y: np.ndarray) -> None:
    keras_model, numpy_model = both_models(km, spec)
    keras_logits = km.predict_logits(keras_model, x)
    numpy_logits = numpy_cnn.predict_logits(numpy_model, x)
    assert np.abs(keras_logits - numpy_logits).max() <= 1e-5
    keras_loss, keras_grads = km.loss_and_grads(keras_model, x, y)
    numpy_loss, numpy_grads = numpy_cnn.loss_and_grads(numpy_model, x, y)
    assert keras_loss == pytest.approx(numpy_loss, rel=1e-5)
    assert list(keras_grads) == list(numpy_grads)
    for name, grad in numpy_grads.items():
        assert keras_grads[name].shape == grad.shape
        relative = np.linalg.norm(keras_grads[name] - grad) / np.linalg.norm(grad)
        assert relative <= 1e-4, name
        np.testing.assert_allclose(
            keras_grads[name], grad, rtol=1e-4, atol=1e-4 * np.abs(grad).max(), err_msg=name
        )


def test_seed_model_on_the_first_shared_mnist_batch(mnist, km: ModuleType) -> None:
    idx = epoch_batches(len(mnist.x_train), 128, seed=0, epoch=0)[0]
    assert_parity(km, ModelSpec(), mnist.x_train[idx], mnist.y_train[idx])


@pytest.mark.parametrize("name", sorted(OTHER_SPECS))
def test_other_specs_on_random_images(name: str, km: ModuleType) -> None:
    spec = OTHER_SPECS[name]
    rng = np.random.default_rng(4)
    x = rng.random((32, *spec.input_shape), dtype=np.float32)
    y = rng.integers(0, spec.num_classes, size=32)
    assert_parity(km, spec, x, y)


@pytest.mark.parametrize(
    "train_spec",
    [
        TrainSpec(dtype="float64"),
        TrainSpec(dtype="float64", epsilon=1e-4, epsilon_convention="keras"),
        TrainSpec(dtype="float64", optimizer="sgd", learning_rate=0.05, momentum=0.9),
    ],
    ids=["adam-torch", "adam-keras", "sgd-momentum"],
)
def test_same_weights_after_optimizer_steps(train_spec: TrainSpec, km: ModuleType) -> None:
    """Float64, so the comparison sees the update rules and not float32 kernels' rounding."""
    spec = OTHER_SPECS["strided-pool"]
    keras_model, numpy_model = both_models(km, spec, "float64")
    rng = np.random.default_rng(5)
    batches = [
        (rng.random((16, *spec.input_shape)), rng.integers(0, spec.num_classes, size=16))
        for _ in range(4)
    ]
    keras_losses = km.train_steps(keras_model, train_spec, batches)
    numpy_losses = numpy_cnn.train_steps(numpy_model, train_spec, batches)
    # Keras holds the learning rate in float32 (and its own Adam raises float32-rounded betas
    # to the step count): about 1e-7 relative after a few steps, even in float64; weights
    # near zero get an absolute tolerance far below the size of one update (~1e-3).
    rtol = 1e-6
    np.testing.assert_allclose(keras_losses, numpy_losses, rtol=rtol)
    numpy_weights = numpy_cnn.get_weights(numpy_model)
    for name, value in km.get_weights(keras_model).items():
        np.testing.assert_allclose(value, numpy_weights[name], rtol=rtol, atol=1e-7, err_msg=name)
