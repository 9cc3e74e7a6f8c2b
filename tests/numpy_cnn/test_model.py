"""numpy_cnn.model: shapes, the contract functions, whole-network gradients against finite
differences and against an independent PyTorch computation, optimisers against torch.optim."""

from __future__ import annotations

import numpy as np
import pytest

from cnn_common.errors import ImageError
from cnn_common.spec import ConvBlock, DenseLayer, ModelSpec, TrainSpec, layer_shapes, layers
from cnn_common.weights import from_torch_layout, init_weights, to_torch_layout
from numpy_cnn import (
    build,
    evaluate,
    feature_maps,
    get_weights,
    load,
    loss_and_grads,
    predict,
    predict_logits,
    save,
    set_weights,
    train_steps,
)
from numpy_cnn.model import EVAL_BATCH

SEED_SPEC = ModelSpec()
# Strides, 'same' padding with an even kernel (asymmetric pads), no pooling after conv2,
# overlapping pooling, two hidden dense layers, dropout, and every activation.
ODD_SPEC = ModelSpec(
    input_shape=(11, 10, 2),
    conv=(
        ConvBlock(
            filters=3,
            kernel_size=4,
            stride=1,
            padding="same",
            activation="tanh",
            pool_size=3,
            pool_stride=2,
        ),
        ConvBlock(
            filters=4, kernel_size=3, stride=2, padding="same", activation="relu", pool_size=0
        ),
    ),
    dense=(
        DenseLayer(units=6, activation="sigmoid", dropout=0.3),
        DenseLayer(units=5, activation="linear"),
    ),
    num_classes=4,
)
SMALL_SPEC = ModelSpec(
    input_shape=(9, 9, 1),
    conv=(ConvBlock(filters=2, kernel_size=3), ConvBlock(filters=3, kernel_size=2, pool_size=0)),
    dense=(DenseLayer(units=5, activation="tanh"),),
    num_classes=3,
)


def batch(spec: ModelSpec, n: int, seed: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((n, *spec.input_shape)).astype(dtype)
    return x, rng.integers(0, spec.num_classes, n)


def test_seed_model_shapes_and_parameter_count() -> None:
    model = build(SEED_SPEC)
    assert sum(w.size for w in model.weights.values()) == 46_730
    x, _ = batch(SEED_SPEC, 3, 0, "float32")
    maps = feature_maps(model, x)
    assert list(maps) == ["conv1", "pool1", "conv2", "pool2"]
    assert {k: v.shape[1:] for k, v in maps.items()} == {
        k: v for k, v in layer_shapes(SEED_SPEC).items() if k in maps
    }
    assert all(v.dtype == np.float32 for v in maps.values())
    assert predict_logits(model, x).shape == (3, 10)


@pytest.mark.parametrize("spec", [SEED_SPEC, ODD_SPEC, SMALL_SPEC], ids=["seed", "odd", "small"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_build_follows_the_spec(spec: ModelSpec, dtype: str) -> None:
    model = build(spec, dtype)
    assert [layer.name for layer in model.layers] == [layer.name for layer in layers(spec)]
    x, _ = batch(spec, 4, 1, dtype)
    logits = predict_logits(model, x)
    assert logits.dtype == np.dtype(dtype)
    assert logits.shape == (4, spec.num_classes)
    probs = predict(model, x)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)


def test_predict_rejects_wrong_shapes_and_dtypes() -> None:
    model = build(SEED_SPEC)
    with pytest.raises(ImageError, match=r"\(N, 28, 28, 1\)"):
        predict(model, np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ImageError, match="single image"):
        predict(model, np.zeros((28, 28, 1), np.float32))
    with pytest.raises(ImageError, match="dtype uint8"):
        predict(model, np.zeros((2, 28, 28, 1), np.uint8))
    with pytest.raises(ValueError):
        predict(model, np.zeros((2, 32, 32, 3), np.float32))


def test_evaluate_batches_like_one_pass() -> None:
    model = build(SMALL_SPEC)
    x, y = batch(SMALL_SPEC, EVAL_BATCH + 137, 2, "float32")
    loss, acc, pred = evaluate(model, x, y)
    logits = predict_logits(model, x)
    assert pred.dtype == np.int64 and pred.shape == (len(x),)
    np.testing.assert_array_equal(pred, logits.argmax(axis=1))
    assert acc == pytest.approx(float(np.mean(pred == y)))
    expected, _ = loss_and_grads(model, x, y)
    assert loss == pytest.approx(expected, rel=1e-5)


def test_weights_round_trip_and_save_load(tmp_path) -> None:
    model = build(ODD_SPEC, "float64")
    weights = init_weights(ODD_SPEC, seed=5, dtype="float64")
    set_weights(model, weights)
    got = get_weights(model)
    assert list(got) == list(weights)
    for name in weights:
        np.testing.assert_array_equal(got[name], weights[name])
    got["conv1.kernel"][...] = 0  # a copy: the model is not changed through it
    assert np.any(model.weights["conv1.kernel"] != 0)
    save(model, tmp_path / "m.safetensors")
    again = load(tmp_path / "m.safetensors")
    assert again.dtype == np.float64
    x, _ = batch(ODD_SPEC, 3, 3, "float64")
    np.testing.assert_array_equal(predict_logits(again, x), predict_logits(model, x))
    with pytest.raises(ValueError, match="conv1.kernel"):
        set_weights(model, {**weights, "conv1.kernel": np.zeros((1, 1, 1, 1))})


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("spec", [SMALL_SPEC, ODD_SPEC], ids=["small", "odd"])
def test_whole_network_gradient_check(spec: ModelSpec) -> None:
    """Every weight of every layer, float64 central differences: max relative error < 1e-6."""
    model = build(spec, "float64")
    set_weights(model, {k: v + 0.05 for k, v in init_weights(spec, 3, "float64").items()})
    x, y = batch(spec, 5, 4, "float64")
    _, grads = loss_and_grads(model, x, y)
    h = 1e-5
    for name, w in model.weights.items():
        numeric = np.zeros_like(w)
        flat, nflat = w.reshape(-1), numeric.reshape(-1)
        for k in range(flat.size):
            old = flat[k]
            flat[k] = old + h
            plus, _ = loss_and_grads(model, x, y)
            flat[k] = old - h
            minus, _ = loss_and_grads(model, x, y)
            flat[k] = old
            nflat[k] = (plus - minus) / (2 * h)
        scale = max(np.abs(numeric).max(), np.abs(grads[name]).max())
        error = np.abs(numeric - grads[name]).max() / scale
        assert error < 1e-6, f"{name}: relative error {error:.2e}"


def torch_forward(spec: ModelSpec, torch_weights: dict, x):
    """The spec's network in torch.nn.functional, NCHW, written independently of numpy_cnn."""
    import torch
    import torch.nn.functional as F

    acts = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "linear": lambda t: t}
    out = x.permute(0, 3, 1, 2)  # NHWC -> NCHW
    for layer in layers(spec):
        w = torch_weights.get(f"{layer.name}.kernel")
        b = torch_weights.get(f"{layer.name}.bias")
        if layer.kind == "conv":
            (top, bottom), (left, right) = layer.pad
            out = F.pad(out, (left, right, top, bottom))
            out = acts[layer.activation](F.conv2d(out, w, b, stride=layer.stride))
        elif layer.kind == "pool":
            out = F.max_pool2d(out, layer.kernel_size, layer.stride)
        elif layer.kind == "flatten":
            out = out.flatten(1)  # C, H, W order: to_torch_layout permuted dense1 for it
        elif layer.kind in ("dense", "logits"):
            out = acts[layer.activation](F.linear(out, w, b))
    return out


@pytest.mark.parametrize("spec", [SEED_SPEC, ODD_SPEC], ids=["seed", "odd"])
@pytest.mark.parametrize(("dtype", "tol"), [("float32", 1e-5), ("float64", 1e-10)])
def test_matches_pytorch(spec: ModelSpec, dtype: str, tol: float) -> None:
    """Same weights, same batch: logits, loss and every gradient equal to ``tol`` (relative to
    the largest value of each tensor)."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    weights = init_weights(spec, seed=1, dtype=dtype)
    rng = np.random.default_rng(9)
    weights = {k: (v + rng.normal(0, 0.05, v.shape)).astype(dtype) for k, v in weights.items()}
    model = build(spec, dtype)
    set_weights(model, weights)
    x, y = batch(spec, 16, 5, dtype)

    tw = {k: torch.tensor(v, requires_grad=True) for k, v in to_torch_layout(weights, spec).items()}
    t_logits = torch_forward(spec, tw, torch.tensor(x))
    t_loss = F.cross_entropy(t_logits, torch.tensor(y))
    t_loss.backward()
    t_grads = from_torch_layout({k: v.grad.numpy() for k, v in tw.items()}, spec)

    def close(ours: np.ndarray, ref: np.ndarray, what: str) -> None:
        scale = max(float(np.abs(ref).max()), 1e-30)
        error = float(np.abs(ours.astype(np.float64) - ref).max()) / scale
        assert error < tol, f"{what}: relative difference {error:.2e}"

    close(predict_logits(model, x), t_logits.detach().numpy(), "logits")
    loss, grads = loss_and_grads(model, x, y)
    assert abs(loss - t_loss.item()) <= tol * abs(t_loss.item())
    for name in weights:
        assert grads[name].dtype == np.dtype(dtype)
        close(grads[name], t_grads[name], name)


# ----------------------------------------------------------------------------- optimisers


def torch_steps(spec: ModelSpec, train_spec: TrainSpec, weights: dict, batches: list) -> dict:
    import torch
    import torch.nn.functional as F

    tw = {k: torch.tensor(v, requires_grad=True) for k, v in to_torch_layout(weights, spec).items()}
    if train_spec.optimizer == "adam":
        opt = torch.optim.Adam(
            tw.values(),
            lr=train_spec.learning_rate,
            betas=(train_spec.beta_1, train_spec.beta_2),
            eps=train_spec.epsilon,
        )
    else:
        opt = torch.optim.SGD(
            tw.values(), lr=train_spec.learning_rate, momentum=train_spec.momentum
        )
    for x, y in batches:
        opt.zero_grad()
        F.cross_entropy(torch_forward(spec, tw, torch.tensor(x)), torch.tensor(y)).backward()
        opt.step()
    return from_torch_layout({k: v.detach().numpy() for k, v in tw.items()}, spec)


@pytest.mark.parametrize(
    "train_spec",
    [
        TrainSpec(dtype="float64"),
        TrainSpec(dtype="float64", optimizer="sgd", learning_rate=0.05, momentum=0.9),
    ],
    ids=["adam", "sgd"],
)
def test_train_steps_match_torch_optim(train_spec: TrainSpec) -> None:
    pytest.importorskip("torch")
    spec = SMALL_SPEC
    weights = init_weights(spec, seed=2, dtype="float64")
    batches = [batch(spec, 8, 10 + k, "float64") for k in range(5)]
    model = build(spec, "float64")
    set_weights(model, weights)
    losses = train_steps(model, train_spec, batches)
    assert len(losses) == 5
    expected = torch_steps(spec, train_spec, weights, batches)
    for name, value in get_weights(model).items():
        np.testing.assert_allclose(value, expected[name], rtol=1e-9, atol=1e-12, err_msg=name)


def test_adam_epsilon_conventions() -> None:
    """Keras's convention adds eps to sqrt(v) before the bias correction: with a large eps the
    first step differs from PyTorch's by exactly the factor the formulas predict."""
    from numpy_cnn.optim import adam, initial_state

    g = np.array([0.5, -2.0, 1e-3])
    steps = {}
    for convention in ("torch", "keras"):
        spec = TrainSpec(epsilon=0.1, epsilon_convention=convention)
        state = initial_state(spec, np.zeros(3))
        w, state = adam(np.zeros(3), g, state)
        assert state["t"] == 1
        steps[convention] = -w
    # t = 1: m_hat = g, v_hat = g^2, sqrt(v) = sqrt(1 - b2) |g|.
    b2 = 0.999
    np.testing.assert_allclose(steps["torch"], 1e-3 * g / (np.abs(g) + 0.1))
    np.testing.assert_allclose(
        steps["keras"], 1e-3 * np.sqrt(1 - b2) * g / (np.sqrt(1 - b2) * np.abs(g) + 0.1)
    )


def test_import_stays_framework_free() -> None:
    import subprocess
    import sys

    code = (
        "import sys, numpy_cnn; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torch', 'tensorflow', 'keras', 'lightning', 'matplotlib'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
