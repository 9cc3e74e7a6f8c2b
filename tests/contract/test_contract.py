"""The contract (docs/design.md), checked the same way for every registered framework.

Each test takes ``framework`` (the package, imported as compare imports it) and runs once per
framework; see ``conftest.py`` for which frameworks a process hosts.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import pkgutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnn_common.data import Data, subset
from cnn_common.errors import ImageError, NonFiniteLossError, WeightsError
from cnn_common.framework import CONTRACT
from cnn_common.metrics import evaluate_logits, softmax
from cnn_common.results import RESULT_FILE, WEIGHTS_FILE, RunResult
from cnn_common.spec import ConvBlock, DenseLayer, ModelSpec, TrainSpec, layers, param_count
from cnn_common.weights import init_weights, load_weights, weight_names
from tests.reference import numeric_gradient, reference_logits, reference_loss, sample_indices

REPO = Path(__file__).resolve().parents[2]

SEED = ModelSpec()
# Three 3x3 'same' blocks, the second with stride 2 on 14x14 (TensorFlow pads it (0, 1): the
# placement frameworks disagree on), and dropout after the dense layer.
THREE_BLOCKS = ModelSpec(
    conv=(
        ConvBlock(filters=8, kernel_size=3, padding="same"),
        ConvBlock(filters=16, kernel_size=3, stride=2, padding="same", pool_size=0),
        ConvBlock(filters=16, kernel_size=3, padding="same"),
    ),
    dense=(DenseLayer(units=32, dropout=0.5),),
)
SPECS = {"seed": SEED, "three-blocks": THREE_BLOCKS}


def random_weights(spec: ModelSpec, seed: int, dtype: str = "float32") -> dict[str, np.ndarray]:
    """Canonical weights with non-zero biases (so no ReLU sits exactly on its kink)."""
    rng = np.random.default_rng(seed)
    weights = init_weights(spec, seed, "float64")
    for name in weights:
        if name.endswith(".bias"):
            weights[name] = rng.uniform(-0.1, 0.1, size=weights[name].shape)
    return {name: value.astype(dtype) for name, value in weights.items()}


def random_images(spec: ModelSpec, n: int, seed: int, dtype: str = "float32") -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, size=(n, *spec.input_shape)).astype(dtype)


# ----------------------------------------------------------------------------- the names


def test_contract_names_stay_functions(framework) -> None:
    """Every contract name is the function, before and after every submodule is imported."""
    before = {name: getattr(framework, name) for name in CONTRACT}
    assert all(inspect.isfunction(f) for f in before.values()), before
    submodules = [module.name for module in pkgutil.iter_modules(framework.__path__)]
    assert "training" in submodules  # the home of train, imported below like every module
    assert not set(CONTRACT) & set(submodules)  # none is named like a contract function
    for module in submodules:
        importlib.import_module(f"{framework.__name__}.{module}")
        exec(f"import {framework.__name__}.{module}", {})  # noqa: S102 - the import statement
    for name in CONTRACT:
        assert getattr(framework, name) is before[name], name
    assert set(CONTRACT) <= set(dir(framework))


# ----------------------------------------------------------------------------- the model


@pytest.mark.parametrize("spec_name", SPECS)
def test_build_follows_the_spec(framework, spec_name: str) -> None:
    spec = SPECS[spec_name]
    model = framework.build(spec)
    weights = framework.get_weights(model)
    assert list(weights) == weight_names(spec)
    assert sum(v.size for v in weights.values()) == param_count(spec)
    if spec_name == "seed":
        assert param_count(spec) == 46_730
    x = random_images(spec, 3, 0)
    maps = framework.feature_maps(model, x)
    expected = {
        layer.name: (3, *layer.output_shape)
        for layer in layers(spec)
        if layer.kind in ("conv", "pool")
    }
    assert {name: m.shape for name, m in maps.items()} == expected
    assert list(maps) == list(expected)  # layer order
    assert all(m.dtype == np.float32 for m in maps.values())
    assert framework.predict_logits(model, x).shape == (3, spec.num_classes)


def test_native_weights_follow_the_seed(framework) -> None:
    """``build(seed=s)``: the same s gives the same weights, another s other weights."""
    a = framework.get_weights(framework.build(SEED, seed=1))
    b = framework.get_weights(framework.build(SEED, seed=1))
    c = framework.get_weights(framework.build(SEED, seed=2))
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert not np.array_equal(a["conv1.kernel"], c["conv1.kernel"])


def test_weights_round_trip(framework) -> None:
    model = framework.build(THREE_BLOCKS)
    weights = random_weights(THREE_BLOCKS, 3)
    framework.set_weights(model, weights)
    back = framework.get_weights(model)
    for name, value in weights.items():
        assert back[name].shape == value.shape
        np.testing.assert_array_equal(back[name], value, err_msg=name)


def test_wrong_weights_are_refused_with_the_tensor_named(framework) -> None:
    model = framework.build(SEED)
    weights = random_weights(SEED, 0)
    transposed = {**weights, "dense1.kernel": weights["dense1.kernel"].T}
    with pytest.raises(WeightsError, match="dense1.kernel"):
        framework.set_weights(model, transposed)
    missing = {k: v for k, v in weights.items() if k != "logits.bias"}
    with pytest.raises(ValueError, match="logits.bias"):
        framework.set_weights(model, missing)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((2, 1, 28, 28), np.float32), "NHWC"),
        (np.zeros((2, 28, 28, 1), np.uint8), "scale"),
        (np.zeros((28, 28, 1), np.float32), "batch axis"),
    ],
    ids=["nchw", "uint8", "single-image"],
)
def test_wrong_images_are_refused_with_a_message(framework, images, message: str) -> None:
    model = framework.build(SEED)
    for call in (framework.predict_logits, framework.predict, framework.feature_maps):
        with pytest.raises(ImageError, match=message):
            call(model, images)


def test_predict_and_evaluate_come_from_the_logits(framework) -> None:
    model = framework.build(SEED)
    framework.set_weights(model, random_weights(SEED, 1))
    x = random_images(SEED, 50, 1)
    y = np.arange(50) % 10
    logits = framework.predict_logits(model, x)
    np.testing.assert_allclose(framework.predict(model, x), softmax(logits), rtol=1e-6)
    loss, acc, predictions = framework.evaluate(model, x, y)
    expected = evaluate_logits(logits, y)
    assert (loss, acc) == expected[:2]
    np.testing.assert_array_equal(predictions, expected[2])


def test_save_and_load_round_trip(framework, info, tmp_path: Path) -> None:
    model = framework.build(THREE_BLOCKS)
    framework.set_weights(model, random_weights(THREE_BLOCKS, 5))
    path = tmp_path / f"model{info.model_suffix}"
    framework.save(model, path)
    again = framework.load(path)
    x = random_images(THREE_BLOCKS, 4, 2)
    np.testing.assert_array_equal(
        framework.predict_logits(again, x), framework.predict_logits(model, x)
    )


# ----------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("spec_name", SPECS)
def test_logits_loss_and_gradients_match_the_float64_reference(
    framework, info, spec_name: str
) -> None:
    """float64 logits within 1e-10 of the reference, gradients within the numeric gradient's
    own error. A framework that declares it computes float64 partly in float32
    (``float64_exact=False``) is held to float32 tolerances, and to being really off float64,
    so the declaration cannot outlive the behaviour it states."""
    spec = SPECS[spec_name]
    weights = random_weights(spec, 7, "float64")
    x = random_images(spec, 4, 7, "float64")
    y = np.array([3, 1, 4, 1])
    model = framework.build(spec, "float64")
    framework.set_weights(model, weights)
    logits, expected = framework.predict_logits(model, x), reference_logits(spec, weights, x)
    exact = info.float64_exact
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-10 if exact else 1e-5)
    if not exact:
        assert np.abs(logits - expected).max() > 1e-12, "computes float64 exactly after all"
    loss, grads = framework.loss_and_grads(model, x, y)
    assert loss == pytest.approx(reference_loss(spec, weights, x, y), abs=1e-12 if exact else 1e-5)
    rng = np.random.default_rng(0)
    for name, value in weights.items():
        indices = sample_indices(value.shape, 6, rng)
        numeric = numeric_gradient(lambda: reference_loss(spec, weights, x, y), value, indices)
        got = np.array([grads[name][i] for i in indices])
        tolerance = {"rtol": 1e-5, "atol": 1e-8} if exact else {"rtol": 1e-2, "atol": 1e-5}
        np.testing.assert_allclose(got, numeric, err_msg=name, **tolerance)


@pytest.mark.parametrize("spec_name", SPECS)
def test_layer_trace_follows_the_reference_layer_by_layer(framework, info, spec_name) -> None:
    """Every layer's output matches the float64 reference's; the weight gradients are
    ``loss_and_grads``'s; the image's gradient matches the reference's numeric one; and each
    layer's input gradient is the next layer's backward: the trace is what the locator reads."""
    spec = SPECS[spec_name]
    weights = random_weights(spec, 8, "float64")
    x = random_images(spec, 3, 8, "float64")
    y = np.array([2, 7, 1])
    model = framework.build(spec, "float64")
    framework.set_weights(model, weights)
    trace = framework.layer_trace(model, x, y)
    names = [layer.name for layer in layers(spec)]
    assert sorted(trace) == sorted(
        ["loss"]
        + [f"forward/{n}" for n in names]
        + [f"grad_input/{n}" for n in names]
        + [f"grad/{n}" for n in weight_names(spec)]
    )
    atol = 1e-10 if info.float64_exact else 1e-5
    np.testing.assert_allclose(
        trace[f"forward/{names[-1]}"], reference_logits(spec, weights, x), atol=atol
    )
    loss, grads = framework.loss_and_grads(model, x, y)
    assert float(trace["loss"]) == pytest.approx(loss, abs=1e-12)
    for name, value in grads.items():
        np.testing.assert_allclose(trace[f"grad/{name}"], value, rtol=1e-9, atol=1e-12)
    for layer in layers(spec):  # shapes: the layer's input and output, batch first
        assert trace[f"forward/{layer.name}"].shape == (3, *layer.output_shape), layer.name
        assert trace[f"grad_input/{layer.name}"].shape == (3, *layer.input_shape), layer.name
    pixels = sample_indices(x.shape, 6, np.random.default_rng(1))
    numeric = numeric_gradient(lambda: reference_loss(spec, weights, x, y), x, pixels)
    got = np.array([trace[f"grad_input/{names[0]}"][i] for i in pixels])
    tolerance = {"rtol": 1e-5, "atol": 1e-8} if info.float64_exact else {"rtol": 1e-2, "atol": 1e-5}
    np.testing.assert_allclose(got, numeric, **tolerance)


def test_train_steps_update_the_weights_and_return_each_loss(framework) -> None:
    spec, train = SEED, TrainSpec(learning_rate=1e-3)
    start = random_weights(spec, 4)
    x, y = random_images(spec, 16, 4), np.arange(16) % 10
    model = framework.build(spec)
    framework.set_weights(model, start)
    first_loss, _ = framework.loss_and_grads(model, x, y)
    losses = framework.train_steps(model, train, [(x, y), (x, y)])
    assert len(losses) == 2 and losses[0] == pytest.approx(first_loss, rel=1e-5)
    assert losses[1] < losses[0]  # one Adam step on the same batch lowers its loss
    after = framework.get_weights(model)
    # Adam's first step moves every weight with a gradient by about the learning rate.
    step = np.abs(after["logits.kernel"] - start["logits.kernel"])
    assert 0.5e-3 < np.median(step) < 2.5e-3


# ----------------------------------------------------------------------------- training


def test_a_nan_loss_stops_with_a_clear_error(framework, mnist: Data, tmp_path: Path) -> None:
    # A diverging run rather than NaN images: TensorFlow's ReLU turns a NaN input into 0, so
    # NaN pixels do not give every framework a NaN loss.
    data = subset(mnist, 640, 50, 50)
    diverging = TrainSpec(epochs=1, batch_size=64, optimizer="sgd", learning_rate=1e38)
    with pytest.raises(NonFiniteLossError, match=r"became (nan|inf) at epoch 1, step \d+"):
        framework.train(SEED, diverging, data, tmp_path, progress=False)
    assert not (tmp_path / RESULT_FILE).exists()


def _child(name: str, out: Path, epochs: int, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "tests.contract.train_child", name, str(out), str(epochs)]
    return subprocess.run([*command, *extra], env=env, cwd=REPO, capture_output=True, timeout=600)


def test_resume_after_a_kill_equals_an_uninterrupted_run(
    name, framework, data_dir, tmp_path
) -> None:
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    done = _child(name, whole, 3)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    cut = _child(name, killed, 3, "--kill-at", "2:3")  # mid-epoch 2, after checkpoint 1
    assert cut.returncode == -signal.SIGKILL, cut.stderr.decode()[-3000:]
    assert not (killed / RESULT_FILE).exists()
    done = _child(name, killed, 3, "--resume")
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    a, b = RunResult.from_json(whole / RESULT_FILE), RunResult.from_json(killed / RESULT_FILE)
    assert b.extra["resumed_from_epoch"] == 1
    assert a.init_digest == b.init_digest
    assert a.step_losses == b.step_losses
    assert [dataclasses.astuple(h)[:5] for h in a.history] == [
        dataclasses.astuple(h)[:5] for h in b.history
    ]
    assert (a.test_loss, a.predictions) == (b.test_loss, b.predictions)
    wa, wb = load_weights(whole / WEIGHTS_FILE)[0], load_weights(killed / WEIGHTS_FILE)[0]
    for tensor in wa:
        np.testing.assert_array_equal(wa[tensor], wb[tensor], err_msg=tensor)


def test_resume_with_more_epochs_extends_a_finished_run(
    framework, mnist: Data, tmp_path: Path
) -> None:
    """A finished 1-epoch run resumed with 2 epochs trains the second one only, says it
    resumed, and ends as a 2-epoch run from the start would."""
    data = subset(mnist, 300, 100, 100)
    weights = init_weights(SEED, 0)
    one, two = TrainSpec(epochs=1, batch_size=100), TrainSpec(epochs=2, batch_size=100)
    whole = framework.train(SEED, two, data, tmp_path / "whole", weights, progress=False)
    first = framework.train(SEED, one, data, tmp_path / "extended", weights, progress=False)
    extended = framework.train(
        SEED, two, data, tmp_path / "extended", weights, resume=True, progress=False
    )
    assert "resumed_from_epoch" not in first.extra
    assert extended.extra["resumed_from_epoch"] == 1
    assert [h.epoch for h in extended.history] == [1, 2]
    assert extended.step_losses[: len(first.step_losses)] == first.step_losses
    assert extended.step_losses == whole.step_losses
    assert extended.init_digest == whole.init_digest


# ----------------------------------------------------------------------------- bench


def test_phase_times_times_every_step_it_can_separate(framework, mnist: Data) -> None:
    """The optional ``phase_times``: every step timed in the phases the framework can tell
    apart (all four, or a compiled step and the loop around it), and a note where not."""
    from cnn_common.phases import PHASES

    if not hasattr(framework, "phase_times"):
        pytest.skip(f"{framework.__name__} has no phase_times (optional)")
    data = subset(mnist, 640, 50, 50)
    phases = framework.phase_times(SEED, TrainSpec(), data, init_weights(SEED, 0), 6)
    times = phases.times
    assert set(times) <= set(PHASES)
    if "fused" in times:  # a compiled step: the note says why it is not cut further
        assert not {"forward", "backward", "optimizer"} & set(times) and phases.note
    else:
        assert {"forward", "backward", "optimizer"} <= set(times)
    assert len(times["fused" if "fused" in times else "forward"]) == 6
    assert all(t >= 0 for values in times.values() for t in values)
    medians = phases.medians()
    assert list(medians) == [p for p in PHASES if p in times]
    assert sum(medians.values()) > 0
