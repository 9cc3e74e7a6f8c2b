"""keras_cnn on a layer-list spec against the float64 reference (tests/reference.py), as one
function that any process can run: the tests call it in-process on TensorFlow and in a fresh
process on each other backend (Keras fixes its backend when it is first imported)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnn_common.spec import ModelSpec, TrainSpec, layers, trainable_shapes
from cnn_common.spec_files import load_spec
from cnn_common.weights import init_weights
from tests.reference import (
    reference_forward,
    reference_gradients,
    reference_logits,
    reference_running_statistics,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE_SPECS = ("resnet_small", "vgg_small", "mobilenet_small")


def example(name: str) -> ModelSpec:
    """The model spec of ``examples/<name>.yaml``."""
    return load_spec(EXAMPLES / f"{name}.yaml")[0]


def varied_weights(spec: ModelSpec, seed: int = 3) -> dict[str, np.ndarray]:
    """Float64 weights with nothing at its initial value: non-zero biases and betas, gammas
    away from one, running statistics away from zero and one (so that evaluation mode and
    training mode differ, and a statistic used in the wrong place shows)."""
    rng = np.random.default_rng(seed)
    weights = init_weights(spec, seed=seed, dtype="float64")
    for name, value in weights.items():
        if name.endswith((".bias", ".beta", ".moving_mean")):
            weights[name] = 0.1 * rng.standard_normal(value.shape)
        elif name.endswith(".gamma"):
            weights[name] = 1.0 + 0.2 * rng.standard_normal(value.shape)
        elif name.endswith(".moving_variance"):
            weights[name] = rng.uniform(0.5, 1.5, value.shape)
    return weights


def gap(got: np.ndarray, expected: np.ndarray) -> float:
    """The largest difference relative to the largest value expected."""
    scale = max(float(np.abs(expected).max()), 1e-30)
    return float(np.abs(np.asarray(got, dtype=np.float64) - expected).max() / scale)


def reference_gaps(spec: ModelSpec, n: int = 4) -> dict[str, float]:
    """The largest relative gap of each query against the reference, on ``n`` random images
    in float64: evaluation-mode logits, ``loss_and_grads`` (training mode), ``layer_trace``
    (evaluation mode: outputs, total input gradients, weight gradients), the running
    statistics after one ``train_steps`` step; ``unchanged``: 1.0 where a query moved the
    running statistics, ``grad_names`` and ``trace_order``: 1.0 where the gradients' or the
    trace's keys are not in the spec's order (0.0 where all is well)."""
    import keras_cnn

    weights = varied_weights(spec)
    rng = np.random.default_rng(7)
    x = rng.random((n, *spec.input_shape))
    y = rng.integers(0, spec.num_classes, size=n)
    model = keras_cnn.build(spec, "float64")
    keras_cnn.set_weights(model, weights)
    before = keras_cnn.get_weights(model)  # as the backend holds them (jax: float32)
    gaps = {"logits": gap(keras_cnn.predict_logits(model, x), reference_logits(spec, weights, x))}
    ref_loss, ref_grads, _ = reference_gradients(spec, weights, x, y, training=True)
    loss, grads = keras_cnn.loss_and_grads(model, x, y)
    gaps["loss"] = abs(loss - ref_loss) / ref_loss
    gaps["grads"] = max(gap(grads[k], g) for k, g in ref_grads.items())
    gaps["grad_names"] = float(list(grads) != list(trainable_shapes(spec)))
    trace = keras_cnn.layer_trace(model, x, y)
    eval_loss, eval_grads, input_grads = reference_gradients(spec, weights, x, y, training=False)
    outputs = reference_forward(spec, weights, x)
    names = [layer.name for layer in layers(spec)]
    keys = ["loss", *(f"forward/{k}" for k in names), *(f"grad_input/{k}" for k in names)]
    gaps["trace_order"] = float(list(trace) != [*keys, *(f"grad/{k}" for k in grads)])
    gaps["trace_loss"] = abs(float(trace["loss"]) - eval_loss) / eval_loss
    gaps["trace_forward"] = max(gap(trace[f"forward/{k}"], outputs[k]) for k in input_grads)
    gaps["trace_grad_input"] = max(gap(trace[f"grad_input/{k}"], g) for k, g in input_grads.items())
    gaps["trace_grads"] = max(gap(trace[f"grad/{k}"], g) for k, g in eval_grads.items())
    keras_cnn.feature_maps(model, x)
    after = keras_cnn.get_weights(model)
    gaps["unchanged"] = float(any(not np.array_equal(after[k], v) for k, v in before.items()))
    expected = reference_running_statistics(spec, weights, x)
    keras_cnn.train_steps(model, TrainSpec(dtype="float64"), [(x, y)])
    stepped = keras_cnn.get_weights(model)
    gaps["running"] = max((gap(stepped[k], v) for k, v in expected.items()), default=0.0)
    return gaps
