"""The contract on the model families (``examples/resnet_small.yaml``, ``vgg_small.yaml``,
``mobilenet_small.yaml``), checked the same way for every registered framework against the
float64 reference (``tests/reference.py``) in the mode the contract states for each call:
evaluation mode (running statistics) for ``predict_logits``, ``feature_maps`` and
``layer_trace``; training mode (the batch's statistics) for ``loss_and_grads`` and
``train_steps``, whose one step updates the running statistics as the spec says.

A framework that declares it computes float64 partly in float32 (``float64_exact=False``) is
held to float32 tolerances. Four images per test: the batch statistics need a batch, nothing
more.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cnn_common.spec import TrainSpec, feature_map_layers, layers, trainable_shapes, weight_shapes
from cnn_common.weights import weight_names
from tests.contract.families import FAMILIES, family_weights, random_images
from tests.reference import (
    reference_forward,
    reference_gradients,
    reference_running_statistics,
)

LABELS = np.array([3, 1, 4, 1])


def tolerances(info) -> dict:  # noqa: ANN001 - a FrameworkInfo
    """``assert_allclose`` tolerances by quantity for a framework's float64, and the smallest
    |gradient| whose Adam step is compared."""
    if info.float64_exact:
        return {
            "logits": {"rtol": 0, "atol": 1e-10},
            "loss": {"rel": 0, "abs": 1e-10},
            "grads": {"rtol": 1e-6, "atol": 1e-10},
            "stats": {"rtol": 1e-10, "atol": 1e-12},
            "weights": {"rtol": 0, "atol": 1e-9},
            "adam_from": 0.0,
        }
    return {
        "logits": {"rtol": 0, "atol": 1e-5},
        "loss": {"rel": 0, "abs": 1e-5},
        "grads": {"rtol": 1e-2, "atol": 1e-5},
        "stats": {"rtol": 1e-5, "atol": 1e-7},
        "weights": {"rtol": 0, "atol": 1e-6},
        # Adam's first step lr * g / (|g| + eps) turns from -lr to lr where |g| is near 0: it
        # is compared where float32's error in g cannot move it
        "adam_from": 1e-5,
    }


def running_statistics(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: value for name, value in weights.items() if ".moving_" in name}


@pytest.mark.parametrize("spec_name", FAMILIES)
def test_family_builds_with_its_state_and_its_feature_maps(framework, spec_name: str) -> None:
    """Every tensor of ``weight_shapes`` (running statistics included) in layer order, and the
    maps of ``feature_map_layers`` in that order, float32 NHWC."""
    spec = FAMILIES[spec_name]
    model = framework.build(spec)
    weights = framework.get_weights(model)
    assert list(weights) == weight_names(spec)
    assert {name: value.shape for name, value in weights.items()} == weight_shapes(spec)
    x = random_images(spec, 3, 0)
    maps = framework.feature_maps(model, x)
    shapes = {layer.name: (3, *layer.output_shape) for layer in layers(spec)}
    assert list(maps) == feature_map_layers(spec)
    assert {name: m.shape for name, m in maps.items()} == {
        name: shapes[name] for name in feature_map_layers(spec)
    }
    assert all(m.dtype == np.float32 for m in maps.values())
    assert framework.predict_logits(model, x).shape == (3, spec.num_classes)


@pytest.mark.parametrize("spec_name", FAMILIES)
def test_family_weights_round_trip_with_the_running_statistics(
    framework, info, spec_name: str, tmp_path: Path
) -> None:
    """``set_weights`` then ``get_weights``, and the framework's own file, give back every
    tensor as set, the running statistics included."""
    spec = FAMILIES[spec_name]
    weights = family_weights(spec, 3)
    model = framework.build(spec)
    framework.set_weights(model, weights)
    path = tmp_path / f"model{info.model_suffix}"
    framework.save(model, path)
    for source in (model, framework.load(path)):
        back = framework.get_weights(source)
        assert list(back) == list(weights)
        for name, value in weights.items():
            np.testing.assert_array_equal(back[name], value, err_msg=name)


@pytest.mark.parametrize("spec_name", FAMILIES)
def test_family_logits_and_maps_match_the_reference_in_evaluation_mode(
    framework, info, spec_name: str
) -> None:
    spec = FAMILIES[spec_name]
    weights = family_weights(spec, 7, "float64")
    x = random_images(spec, 4, 7, "float64")
    model = framework.build(spec, "float64")
    framework.set_weights(model, weights)
    expected = reference_forward(spec, weights, x)
    tol = tolerances(info)
    logits = framework.predict_logits(model, x)
    np.testing.assert_allclose(logits, expected[layers(spec)[-1].name], **tol["logits"])
    for name, value in framework.feature_maps(model, x).items():
        np.testing.assert_allclose(value, expected[name], rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("spec_name", FAMILIES)
def test_family_loss_and_grads_match_the_reference_in_training_mode(
    framework, info, spec_name: str
) -> None:
    """The batch's statistics normalise, every trainable tensor has its gradient (and only
    those), and the running statistics stay as they were (the call is a query)."""
    spec = FAMILIES[spec_name]
    weights = family_weights(spec, 8, "float64")
    x = random_images(spec, 4, 8, "float64")
    model = framework.build(spec, "float64")
    framework.set_weights(model, weights)
    before = running_statistics(framework.get_weights(model))
    loss, grads = framework.loss_and_grads(model, x, LABELS)
    expected_loss, expected, _ = reference_gradients(spec, weights, x, LABELS)
    tol = tolerances(info)
    assert loss == pytest.approx(expected_loss, **tol["loss"])
    assert sorted(grads) == sorted(trainable_shapes(spec))
    for name, value in expected.items():
        np.testing.assert_allclose(grads[name], value, err_msg=name, **tol["grads"])
    after = running_statistics(framework.get_weights(model))
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)


@pytest.mark.parametrize("spec_name", FAMILIES)
def test_family_one_step_updates_the_running_statistics_as_the_spec_says(
    framework, info, spec_name: str
) -> None:
    """One ``train_steps`` step: its loss is the training-mode loss, the running statistics
    are updated once from the step's batch, and each trainable tensor moves by Adam's first
    step, ``lr * g / (|g| + eps)`` with the reference's gradient ``g``."""
    spec = FAMILIES[spec_name]
    train = TrainSpec(learning_rate=1e-3, dtype="float64")
    weights = family_weights(spec, 4, "float64")
    x = random_images(spec, 4, 4, "float64")
    model = framework.build(spec, "float64")
    framework.set_weights(model, weights)
    (loss,) = framework.train_steps(model, train, [(x, LABELS)])
    expected_loss, grads, _ = reference_gradients(spec, weights, x, LABELS)
    tol = tolerances(info)
    assert loss == pytest.approx(expected_loss, **tol["loss"])
    after = framework.get_weights(model)
    for name, value in reference_running_statistics(spec, weights, x).items():
        np.testing.assert_allclose(after[name], value, err_msg=name, **tol["stats"])
    for name, g in grads.items():
        step = train.learning_rate * g / (np.abs(g) + train.epsilon)
        seen = np.abs(g) >= tol["adam_from"]
        np.testing.assert_allclose(
            after[name][seen], (weights[name] - step)[seen], err_msg=name, **tol["weights"]
        )


@pytest.mark.parametrize("spec_name", FAMILIES)
def test_family_layer_trace_follows_the_reference_in_evaluation_mode(
    framework, info, spec_name: str
) -> None:
    """Every layer's output, every trainable tensor's gradient and every layer's total input
    gradient, with batchnorm normalising from its running statistics."""
    spec = FAMILIES[spec_name]
    weights = family_weights(spec, 5, "float64")
    x = random_images(spec, 4, 5, "float64")
    model = framework.build(spec, "float64")
    framework.set_weights(model, weights)
    trace = framework.layer_trace(model, x, LABELS)
    names = [layer.name for layer in layers(spec)]
    assert sorted(trace) == sorted(
        ["loss"]
        + [f"forward/{n}" for n in names]
        + [f"grad_input/{n}" for n in names]
        + [f"grad/{n}" for n in trainable_shapes(spec)]
    )
    outputs = reference_forward(spec, weights, x)
    loss, grads, input_grads = reference_gradients(spec, weights, x, LABELS, training=False)
    tol = tolerances(info)
    assert float(trace["loss"]) == pytest.approx(loss, **tol["loss"])
    for name in names:
        np.testing.assert_allclose(
            trace[f"forward/{name}"], outputs[name], err_msg=name, **tol["grads"]
        )
        np.testing.assert_allclose(
            trace[f"grad_input/{name}"], input_grads[name], err_msg=name, **tol["grads"]
        )
    for name, value in grads.items():
        np.testing.assert_allclose(trace[f"grad/{name}"], value, err_msg=name, **tol["grads"])
