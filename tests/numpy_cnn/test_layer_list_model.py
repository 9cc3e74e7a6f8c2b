"""numpy_cnn on the layer-list specs (examples/resnet_small, vgg_small, mobilenet_small, on
small images): gradcheck of the whole network with batchnorm in training mode, the contract in
its two modes (running statistics in the weights, updated by train_steps and nothing else),
the layer trace of a residual graph, and the demo's walk."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from cnn_common.spec import (
    IMAGE,
    ModelSpec,
    TrainSpec,
    feature_map_layers,
    layers,
    trainable_shapes,
    weight_shapes,
)
from cnn_common.spec_files import load_spec
from numpy_cnn import (
    build,
    demo,
    feature_maps,
    get_weights,
    gradcheck,
    layer_trace,
    load,
    loss_and_grads,
    ops,
    parallel,
    predict_logits,
    save,
    set_weights,
    step,
    train_steps,
)
from numpy_cnn.network import forward, update_running
from numpy_cnn.optim import Optimizer
from tests.reference import numeric_gradient

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NAMES = ("resnet_small", "vgg_small", "mobilenet_small")


def small(name: str, size: int = 16) -> ModelSpec:
    """An example spec on ``size x size`` images (the same layers, smaller maps)."""
    return dataclasses.replace(load_spec(EXAMPLES / f"{name}.yaml")[0], input_shape=(size, size, 1))


def images(spec: ModelSpec, n: int, seed: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, *spec.input_shape)).astype(dtype)
    return x, rng.integers(0, spec.num_classes, n)


def randomised(spec: ModelSpec, dtype: str, seed: int = 0):
    """A model of ``spec`` whose batchnorm tensors are no identity: random gamma, beta and
    running statistics (so evaluation and training mode differ)."""
    model = build(spec, dtype)
    rng = np.random.default_rng(seed)
    weights = get_weights(model)
    for name, value in weights.items():
        if name.endswith((".gamma", ".moving_variance")):
            weights[name] = rng.uniform(0.5, 1.5, size=value.shape)
        elif name.endswith((".beta", ".moving_mean")):
            weights[name] = rng.normal(0.0, 0.2, size=value.shape)
    set_weights(model, weights)
    return model


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_passes_on_the_example_spec(name: str) -> None:
    checks = gradcheck.network_checks(small(name), samples=4, label=name)
    assert {check.tensor for check in checks} == {*trainable_shapes(small(name)), "image"}
    for check in checks:
        assert check.ok, check


def test_gradcheck_command_takes_a_spec() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "numpy_cnn", "gradcheck", "--samples", "1", "--spec",
         str(EXAMPLES / "mobilenet_small.yaml")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "network (mobilenet_small, 2 images)" in done.stdout
    for case in ("batchnorm, training mode", "depthwise conv", "avgpool", "global avgpool"):
        assert case in done.stdout
    assert done.stdout.rstrip().endswith("checks PASS")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_weights_carry_the_running_statistics(dtype: str, tmp_path: Path) -> None:
    spec = small("resnet_small")
    model = randomised(spec, dtype)
    weights = get_weights(model)
    assert list(weights) == list(weight_shapes(spec))
    assert "stage2_projbn.moving_variance" in weights
    save(model, tmp_path / "m.npz")
    again = load(tmp_path / "m.npz")
    assert again.dtype == np.dtype(dtype)
    for name, value in get_weights(again).items():
        np.testing.assert_array_equal(value, weights[name])
    x, _ = images(spec, 3, 1, dtype)
    np.testing.assert_array_equal(predict_logits(again, x), predict_logits(model, x))


def test_the_two_modes() -> None:
    """predict uses the running statistics; loss_and_grads the batch's, and leaves the running
    ones as they are; train_steps moves them."""
    spec = small("vgg_small")
    model = randomised(spec, "float64")
    x, y = images(spec, 4, 2, "float64")
    before = get_weights(model)
    logits = predict_logits(model, x)
    loss, grads = loss_and_grads(model, x, y)
    assert list(grads) == list(trainable_shapes(spec))
    assert all(np.array_equal(v, before[k]) for k, v in get_weights(model).items())
    batch_logits, _ = forward(model, x, batch_stats=True)
    assert loss == pytest.approx(ops.softmax_cross_entropy(batch_logits, y)[0], rel=1e-12)
    assert not np.allclose(batch_logits, logits)  # the modes differ
    changed = get_weights(model)
    changed["bn1.moving_mean"] += 1.0  # evaluation reads it, training does not
    set_weights(model, changed)
    assert not np.allclose(predict_logits(model, x), logits)
    assert loss_and_grads(model, x, y)[0] == pytest.approx(loss, rel=1e-12)


def test_train_steps_move_the_running_statistics() -> None:
    """One step of resnet_small: every running statistic moves, the stem's by exactly the
    rule of the spec (momentum 0.1, 'torch', unbiased) from the stem convolution's output."""
    spec = small("resnet_small")
    model = build(spec, "float64")
    x, y = images(spec, 4, 3, "float64")
    start = get_weights(model)
    stem = next(layer for layer in layers(spec) if layer.name == "stem")
    conv, _ = ops.conv2d_forward(x, start["stem.kernel"], np.zeros(16), stem.stride, stem.pad)
    values = conv.reshape(-1, 16)
    losses = train_steps(model, TrainSpec(), [(x, y)])
    assert len(losses) == 1 and np.isfinite(losses[0])
    after = get_weights(model)
    for name in weight_shapes(spec):
        if name.endswith(("moving_mean", "moving_variance")):
            assert not np.array_equal(after[name], start[name]), name
    np.testing.assert_allclose(after["stem_bn.moving_mean"], 0.1 * values.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(
        after["stem_bn.moving_variance"], 0.9 + 0.1 * values.var(axis=0, ddof=1), rtol=1e-10
    )


def test_a_step_in_shards_is_the_whole_batch_step() -> None:
    """train_steps runs one shard of the batch per thread, the shards adding their batchnorm
    sums: the loss, the updated weights and the running statistics are those of the whole
    batch at once (loss_and_grads, one Adam step, the running update of its forward)."""
    spec = small("mobilenet_small")
    sharded, whole = randomised(spec, "float64"), randomised(spec, "float64")
    x, y = images(spec, 7, 6, "float64")  # 7 images: shards of unequal size
    loss, grads = loss_and_grads(whole, x, y)
    _, caches = forward(whole, x, batch_stats=True)
    update_running(whole, caches)
    Optimizer(TrainSpec(), whole.trainable_weights()).step(whole.trainable_weights(), grads)
    assert train_steps(sharded, TrainSpec(), [(x, y)])[0] == pytest.approx(loss, rel=1e-12)
    for name, value in get_weights(sharded).items():
        np.testing.assert_allclose(value, whole.weights[name], rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.skipif(parallel.workers() < 2, reason="one thread: the batch is one shard")
def test_a_failing_shard_does_not_leave_the_others_waiting(monkeypatch) -> None:
    spec = small("vgg_small")
    model = build(spec, "float64")
    x, y = images(spec, 6, 7, "float64")
    backward = step.backward

    def fails_in_shard_one(model, dlogits, caches, inputs=None):
        if model is not model_itself:
            raise RuntimeError("shard failed")
        return backward(model, dlogits, caches, inputs)

    model_itself = model
    monkeypatch.setattr(step, "backward", fails_in_shard_one)
    with pytest.raises((RuntimeError, threading.BrokenBarrierError)):
        train_steps(model, TrainSpec(), [(x, y)])


def test_feature_maps_and_layer_trace_of_a_residual_graph() -> None:
    """feature_maps gives feature_map_layers; the trace's grad_input of a layer is the TOTAL
    gradient of the tensor it reads first: the image's, against central differences of the
    evaluation-mode loss, takes in both branches of every residual block."""
    spec = small("resnet_small", 12)
    model = randomised(spec, "float64", seed=1)
    x, y = images(spec, 2, 4, "float64")
    maps = feature_maps(model, x)
    assert list(maps) == feature_map_layers(spec)
    assert all(m.dtype == np.float32 for m in maps.values())
    trace = layer_trace(model, x, y)
    names = [layer.name for layer in layers(spec)]
    assert {k for k in trace if k.startswith("forward/")} == {f"forward/{n}" for n in names}
    assert {k for k in trace if k.startswith("grad_input/")} == {f"grad_input/{n}" for n in names}
    assert {k for k in trace if k.startswith("grad/")} == {
        f"grad/{n}" for n in trainable_shapes(spec)
    }
    np.testing.assert_allclose(trace["forward/stage1_add"], maps["stage1_add"], rtol=1e-6)
    # stage1_relu2 is read first by stage2_conv1 and by stage2_proj: one total for both.
    read_by = [layer.name for layer in layers(spec) if "stage1_relu2" in layer.inputs]
    assert read_by == ["stage2_conv1", "stage2_proj"]
    np.testing.assert_array_equal(trace["grad_input/stage2_conv1"], trace["grad_input/stage2_proj"])

    def loss() -> float:
        return ops.softmax_cross_entropy(predict_logits(model, x), y)[0]

    index = [tuple(int(i) for i in np.unravel_index(k, x.shape)) for k in (5, 77, 140, 200)]
    numeric = numeric_gradient(loss, x, index, 1e-6)
    analytic = np.array([trace["grad_input/stem"][i] for i in index])
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-9)
    assert layers(spec)[0].inputs == (IMAGE,)


@pytest.mark.parametrize("name", NAMES)
def test_demo_walk_is_the_evaluation_forward(name: str) -> None:
    spec = small(name)
    model = randomised(spec, "float64", seed=2)
    x, _ = images(spec, 2, 5, "float64")
    steps = demo.walk(spec, get_weights(model), x)
    np.testing.assert_allclose(steps[-1].output, predict_logits(model, x), rtol=1e-10)
    assert {layer.name for layer in layers(spec)} <= {step.name for step in steps}
