"""numpy_cnn's model and network beyond the contract suite (tests/contract): specs with every
activation and layer option in both dtypes, chunked evaluation, weights held as copies, the
deferred activation after pooling against the float64 reference, and the optimisers against
torch.optim and the two epsilon formulas."""

from __future__ import annotations

import numpy as np
import pytest

from cnn_common.spec import ConvBlock, DenseLayer, ModelSpec, TrainSpec, layers
from cnn_common.weights import from_torch_layout, init_weights, to_torch_layout
from numpy_cnn import (
    build,
    evaluate,
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
from tests.reference import numeric_gradient, reference_logits, reference_loss

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


@pytest.mark.parametrize("spec", [ODD_SPEC, SMALL_SPEC], ids=["odd", "small"])
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


def test_weights_are_copies_and_float64_survives_save_load(tmp_path) -> None:
    """The model owns its arrays (get_weights hands out copies), and a float64 model saved and
    loaded again is float64 (load takes the dtype from the file)."""
    model = build(ODD_SPEC, "float64")
    weights = init_weights(ODD_SPEC, seed=5, dtype="float64")
    set_weights(model, weights)
    got = get_weights(model)
    got["conv1.kernel"][...] = 0  # a copy: the model is not changed through it
    assert np.any(model.weights["conv1.kernel"] != 0)
    weights["conv1.bias"][...] = 7  # set_weights copied too
    assert not np.any(model.weights["conv1.bias"] == 7)
    save(model, tmp_path / "m.npz")
    again = load(tmp_path / "m.npz")
    assert again.dtype == np.float64
    assert all(w.dtype == np.float64 for w in again.weights.values())
    x, _ = batch(ODD_SPEC, 3, 3, "float64")
    np.testing.assert_array_equal(predict_logits(again, x), predict_logits(model, x))


# ----------------------------------------------------------------------------- gradients


def test_deferred_activations_match_the_float64_reference() -> None:
    """The network applies a conv layer's activation after its pooling (max(f(z)) = f(max(z))):
    with tanh and overlapping pooling, logits and every gradient of every weight still equal
    the float64 reference's, by central differences: max relative error < 1e-6."""
    spec = ODD_SPEC
    weights = {k: v + 0.05 for k, v in init_weights(spec, 3, "float64").items()}
    model = build(spec, "float64")
    set_weights(model, weights)
    x, y = batch(spec, 5, 4, "float64")
    np.testing.assert_allclose(
        predict_logits(model, x), reference_logits(spec, weights, x), rtol=0, atol=1e-10
    )
    _, grads = loss_and_grads(model, x, y)
    for name, w in weights.items():
        indices = list(np.ndindex(w.shape))
        numeric = numeric_gradient(
            lambda: reference_loss(spec, weights, x, y), w, indices, h=1e-5
        ).reshape(w.shape)
        scale = max(np.abs(numeric).max(), np.abs(grads[name]).max())
        error = np.abs(numeric - grads[name]).max() / scale
        assert error < 1e-6, f"{name}: relative error {error:.2e}"


# ----------------------------------------------------------------------------- optimisers


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
    """The package and every module a training run uses load no other framework (and no
    matplotlib, which only the demos need)."""
    import subprocess
    import sys

    code = (
        "import sys, numpy_cnn, numpy_cnn.model, numpy_cnn.network, numpy_cnn.optim, "
        "numpy_cnn.ops, numpy_cnn.training, numpy_cnn.__main__; "
        "numpy_cnn.build; numpy_cnn.train; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torch', 'tensorflow', 'keras', 'lightning', 'jax', 'matplotlib'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
