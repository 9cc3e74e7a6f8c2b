"""keras_cnn on the layer-list form: the example specs (resnet_small, vgg_small,
mobilenet_small) built as functional models in the spec's order, checked against the float64
reference on TensorFlow here and on torch and jax in processes of their own; batchnorm's running
update in both conventions and both stored variances by hand; the running statistics through
get/set_weights, the .keras file and resume."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from cnn_common.data import Data, subset
from cnn_common.errors import WeightsError
from cnn_common.results import WEIGHTS_FILE
from cnn_common.spec import (
    LayerSpec,
    ModelSpec,
    TrainSpec,
    feature_map_layers,
    layers,
    param_count,
    state_count,
    weight_shapes,
)
from cnn_common.weights import load_weights
from tests.keras_cnn.layer_list_checks import (
    EXAMPLE_SPECS,
    example,
    reference_gaps,
    varied_weights,
)

ROOT = Path(__file__).resolve().parents[2]


# keras is imported by fixtures, not at collection: conftest points KERAS_HOME at a temporary
# folder first (importing keras writes keras.json there).
def images(spec: ModelSpec, n: int = 4, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *spec.input_shape), dtype=np.float32)


@pytest.mark.parametrize("name", EXAMPLE_SPECS)
def test_an_example_builds_in_the_spec_order(name: str, km: ModuleType, kn: ModuleType) -> None:
    spec = example(name)
    model = km.build(spec)
    assert isinstance(model, kn.Network)
    expected = layers(spec)
    walked = kn.graph(model)
    assert [layer.name for layer, _ in walked] == [layer.name for layer in expected]
    for (built, inputs), layer in zip(walked, expected, strict=True):
        assert tuple(built.output.shape[1:]) == layer.output_shape, layer.name
        assert inputs == layer.inputs, layer.name
    weights = km.get_weights(model)
    assert {k: v.shape for k, v in weights.items()} == weight_shapes(spec)
    assert list(weights) == list(weight_shapes(spec))
    assert model.count_params() == param_count(spec) + state_count(spec)
    x = images(spec)
    maps = km.feature_maps(model, x)
    assert list(maps) == feature_map_layers(spec)
    shapes = {layer.name: layer.output_shape for layer in expected}
    for key, value in maps.items():
        assert value.dtype == np.float32 and value.shape == (4, *shapes[key])


@pytest.mark.parametrize("name", EXAMPLE_SPECS)
def test_an_example_matches_the_reference_in_float64(name: str, km: ModuleType) -> None:
    """Evaluation-mode logits, training-mode loss and gradients, the evaluation-mode trace
    (total input gradients included) and the running statistics after one step."""
    gaps = reference_gaps(example(name))
    assert gaps.pop("unchanged") == 0.0  # no query moved the running statistics
    assert gaps.pop("grad_names") == 0.0  # trainable tensors only, in the spec's order
    assert gaps.pop("trace_order") == 0.0
    assert max(gaps.values()) < 1e-12, gaps


# jax compiles every train and predict function anew (a minute and more on a busy 2-core
# machine): with -m grid only; the contract suite's families run on keras-jax in CI.
@pytest.mark.parametrize(
    "backend", ["torch", pytest.param("jax", marks=[pytest.mark.slow, pytest.mark.grid])]
)
def test_another_backend_matches_the_reference(backend: str) -> None:
    """Keras 3 computes float64 models in float32 on torch and jax (keras_cnn.framework): the
    gaps are float32's. resnet_small and mobilenet_small hold every kind vgg_small has but
    max-pooling and dense layers, which the seed model's tests check on these backends."""
    pytest.importorskip(backend)
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env.update({"KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)})
    code = """
        import json
        import keras
        from tests.keras_cnn.layer_list_checks import example, reference_gaps
        names = ("resnet_small", "mobilenet_small")
        gaps = {name: reference_gaps(example(name), n=2) for name in names}
        print(json.dumps({"backend": keras.backend.backend(), "gaps": gaps}))
        """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["backend"] == backend
    for name, gaps in report["gaps"].items():
        assert gaps.pop("unchanged") == gaps.pop("grad_names") == gaps.pop("trace_order") == 0.0
        assert max(gaps.values()) < 1e-4, (name, gaps)


# 1..8 in channel 0 and their negatives in channel 1, over N*H*W = 2*2*2 = 8 values:
# mean 4.5 (-4.5), biased variance 42 / 8 = 5.25, unbiased 42 / 7 = 6.
BN_IMAGES = np.stack([np.arange(1.0, 9.0), -np.arange(1.0, 9.0)], axis=-1).reshape(2, 2, 2, 2)
MEAN, BIASED, UNBIASED = 4.5, 5.25, 6.0
# momentum 0.3 from mean 0 and variance 1: "torch" new = 0.7 old + 0.3 batch,
# "keras" new = 0.3 old + 0.7 batch.
BY_HAND = {
    ("torch", "unbiased"): (0.3 * MEAN, 0.7 + 0.3 * UNBIASED),  # (1.35, 2.5)
    ("torch", "biased"): (0.3 * MEAN, 0.7 + 0.3 * BIASED),  # (1.35, 2.275)
    ("keras", "unbiased"): (0.7 * MEAN, 0.3 + 0.7 * UNBIASED),  # (3.15, 4.5)
    ("keras", "biased"): (0.7 * MEAN, 0.3 + 0.7 * BIASED),  # (3.15, 3.975)
}


@pytest.mark.parametrize(("convention", "variance"), sorted(BY_HAND))
def test_batchnorm_follows_the_spec_by_hand(convention: str, variance: str, km: ModuleType) -> None:
    eps = 1e-3
    spec = ModelSpec(
        input_shape=(2, 2, 2),
        layers=(
            LayerSpec(
                "batchnorm",
                name="bn",
                momentum=0.3,
                epsilon=eps,
                momentum_convention=convention,
                variance=variance,
            ),
            LayerSpec("global_avgpool"),
        ),
        num_classes=2,
    )
    model = km.build(spec, "float64")
    x, y = BN_IMAGES, np.array([0, 1])
    sign = np.array([1.0, -1.0])
    # Training mode normalises with the batch's mean and biased variance, and updates nothing.
    bn = model.get_layer("bn")
    trained = np.asarray(bn(x, training=True, update=False))
    np.testing.assert_allclose(trained, (x - sign * MEAN) / np.sqrt(BIASED + eps), rtol=1e-15)
    km.loss_and_grads(model, x, y)
    untouched = km.get_weights(model)
    np.testing.assert_array_equal(untouched["bn.moving_mean"], [0.0, 0.0])
    np.testing.assert_array_equal(untouched["bn.moving_variance"], [1.0, 1.0])
    # One training step moves the running statistics once, as the spec's convention says.
    km.train_steps(model, TrainSpec(dtype="float64"), [(x, y)])
    stepped = km.get_weights(model)
    mean, var = BY_HAND[convention, variance]
    np.testing.assert_allclose(stepped["bn.moving_mean"], sign * mean, rtol=1e-15)
    np.testing.assert_allclose(stepped["bn.moving_variance"], [var, var], rtol=1e-15)
    # Evaluation mode normalises with them (gamma and beta moved by the step).
    gamma, beta = stepped["bn.gamma"], stepped["bn.beta"]
    expected = gamma * (x - sign * mean) / np.sqrt(var + eps) + beta
    trace = km.layer_trace(model, x, y)
    np.testing.assert_allclose(trace["forward/bn"], expected, rtol=1e-14)
    np.testing.assert_allclose(km.feature_maps(model, x)["bn"], expected, rtol=1e-6)


def test_weights_round_trip_with_the_running_statistics(km: ModuleType) -> None:
    spec = example("resnet_small")
    weights = {k: v.astype(np.float32) for k, v in varied_weights(spec).items()}
    model = km.build(spec)
    km.set_weights(model, weights)
    got = km.get_weights(model)
    assert list(got) == list(weights)
    for key, value in weights.items():
        np.testing.assert_array_equal(got[key], value)
    missing = {k: v for k, v in weights.items() if k != "stage2_bn1.moving_variance"}
    with pytest.raises(WeightsError, match="stage2_bn1.moving_variance"):
        km.set_weights(model, missing)


def test_the_keras_file_keeps_the_graph_and_the_running_statistics(
    tmp_path: Path, km: ModuleType, kn: ModuleType
) -> None:
    spec = example("resnet_small")
    model = km.build(spec, seed=2)
    x = images(spec)
    km.train_steps(model, TrainSpec(), [(x, np.arange(4))])  # statistics away from 0 and 1
    path = tmp_path / "resnet.keras"
    km.save(model, path)
    loaded = km.load(path)
    assert isinstance(loaded, kn.Network) and loaded.layer_inputs == model.layer_inputs
    before, after = km.get_weights(model), km.get_weights(loaded)
    assert list(after) == list(before)
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value)
    assert not np.array_equal(before["stem_bn.moving_variance"], np.ones(16, np.float32))
    np.testing.assert_array_equal(km.predict_logits(loaded, x), km.predict_logits(model, x))
    assert int(loaded.optimizer.iterations) == 1


def test_resume_keeps_the_running_statistics(mnist: Data, tmp_path: Path, km: ModuleType) -> None:
    """Nothing is left to train on resume: the test loss, in evaluation mode, comes from the
    running statistics the checkpoint restored."""
    kt = importlib.import_module("keras_cnn.training")
    spec = ModelSpec(
        layers=(
            LayerSpec("conv", filters=4, kernel_size=3, stride=2, bias=False),
            LayerSpec("batchnorm"),
            LayerSpec("activation", activation="relu"),
            LayerSpec("global_avgpool"),
        )
    )
    data = subset(mnist, 256, 64, 128)
    train_spec = TrainSpec(epochs=1, batch_size=64)
    first = kt.train(spec, train_spec, data, tmp_path, progress=False)
    trained, _, _ = load_weights(tmp_path / WEIGHTS_FILE)
    assert not np.array_equal(trained["bn1.moving_mean"], np.zeros(4, np.float32))
    again = kt.train(spec, train_spec, data, tmp_path, resume=True, progress=False)
    assert again.extra["resumed_from_epoch"] == 1
    assert again.test_loss == first.test_loss
    resumed, _, _ = load_weights(tmp_path / WEIGHTS_FILE)
    for key, value in trained.items():
        np.testing.assert_array_equal(resumed[key], value)
