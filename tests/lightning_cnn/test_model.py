"""lightning_cnn.model and .optim: the network against a NumPy float64 forward pass, the
canonical weight layout, gradients against finite differences, the optimisers, save/load."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")

import lightning_cnn as lc  # noqa: E402
from cnn_common.errors import ImageError  # noqa: E402
from cnn_common.spec import (  # noqa: E402
    ConvBlock,
    DenseLayer,
    ModelSpec,
    TrainSpec,
    layers,
    param_count,
)
from cnn_common.weights import init_weights  # noqa: E402

SPECS = {
    "seed": ModelSpec(),
    # even kernel, stride 1, 'same': TensorFlow pads 1 before and 2 after (asymmetric)
    "same-even-kernel": ModelSpec(
        conv=(
            ConvBlock(filters=4, kernel_size=4, padding="same"),
            ConvBlock(filters=6, pool_size=0),
        ),
        dense=(DenseLayer(units=16),),
    ),
    # strides, 'same' with odd total padding, pooling with its own stride, two dense layers,
    # dropout, every activation, a non-square RGB input
    "strided-rgb": ModelSpec(
        input_shape=(13, 11, 3),
        conv=(
            ConvBlock(
                filters=5,
                kernel_size=4,
                stride=2,
                padding="same",
                activation="tanh",
                pool_size=2,
                pool_stride=1,
            ),
            ConvBlock(filters=7, kernel_size=3, activation="sigmoid", pool_size=0),
        ),
        dense=(
            DenseLayer(units=12, activation="sigmoid", dropout=0.5),
            DenseLayer(units=9, activation="linear"),
        ),
        num_classes=4,
    ),
    "no-conv": ModelSpec(
        input_shape=(6, 5, 2), conv=(), dense=(DenseLayer(units=8),), num_classes=3
    ),
}

ACT = {
    "relu": lambda a: np.maximum(a, 0),
    "tanh": np.tanh,
    "sigmoid": lambda a: 1 / (1 + np.exp(-a)),
    "linear": lambda a: a,
}


def numpy_forward(spec: ModelSpec, weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Logits of ``x: (N, H, W, C)`` in float64 NumPy, canonical layout (NHWC, flatten H, W, C),
    'same' padding placed as TensorFlow places it. Dropout is the identity (inference)."""
    a = x.astype(np.float64)
    for layer in layers(spec):
        if layer.kind == "conv":
            (top, bottom), (left, right) = layer.pad
            a = np.pad(a, ((0, 0), (top, bottom), (left, right), (0, 0)))
            kernel = weights[f"{layer.name}.kernel"].astype(np.float64)  # (KH, KW, C, F)
            ho, wo, f = layer.output_shape
            s = layer.stride
            out = np.zeros((len(a), ho, wo, f))
            for i in range(layer.kernel_size):
                for j in range(layer.kernel_size):
                    patch = a[:, i : i + s * (ho - 1) + 1 : s, j : j + s * (wo - 1) + 1 : s, :]
                    out += np.einsum("nhwc,cf->nhwf", patch, kernel[i, j])
            a = ACT[layer.activation](out + weights[f"{layer.name}.bias"])
        elif layer.kind == "pool":
            ho, wo, _ = layer.output_shape
            p, s = layer.kernel_size, layer.stride
            windows = [
                a[:, i : i + s * (ho - 1) + 1 : s, j : j + s * (wo - 1) + 1 : s, :]
                for i in range(p)
                for j in range(p)
            ]
            a = np.max(windows, axis=0)
        elif layer.kind == "flatten":
            a = a.reshape(len(a), -1)  # H, W, C order
        elif layer.kind in ("dense", "logits"):
            a = a @ weights[f"{layer.name}.kernel"] + weights[f"{layer.name}.bias"]
            a = ACT[layer.activation](a)
    return a


def random_weights(spec: ModelSpec, seed: int) -> dict[str, np.ndarray]:
    """Glorot kernels and non-zero biases, so a bias in the wrong place shows."""
    weights = init_weights(spec, seed, "float64")
    rng = np.random.default_rng(seed + 1)
    return {
        k: v + rng.normal(0, 0.1, v.shape) if k.endswith(".bias") else v for k, v in weights.items()
    }


def images(spec: ModelSpec, n: int, seed: int = 0, dtype: str = "float32") -> np.ndarray:
    return np.random.default_rng(seed).random((n, *spec.input_shape)).astype(dtype)


@pytest.mark.parametrize("name", SPECS)
def test_parameter_count_and_layer_names_follow_the_spec(name: str) -> None:
    spec = SPECS[name]
    net = lc.CNN(spec)
    assert sum(p.numel() for p in net.parameters()) == param_count(spec)
    assert [n for n, _ in net.named_children()] == [layer.name for layer in layers(spec)]
    if name == "seed":
        assert param_count(spec) == 46_730


@pytest.mark.parametrize("name", SPECS)
def test_logits_match_a_numpy_float64_forward_pass(name: str) -> None:
    spec = SPECS[name]
    weights = random_weights(spec, 3)
    model = lc.build(spec, "float64")
    lc.set_weights(model, weights)
    x = images(spec, 5, dtype="float64")
    expected = numpy_forward(spec, weights, x)
    np.testing.assert_allclose(lc.predict_logits(model, x), expected, rtol=1e-10, atol=1e-12)


def test_same_padding_is_asymmetric_where_tensorflow_places_it() -> None:
    spec = SPECS["same-even-kernel"]
    conv1 = lc.CNN(spec).conv1
    assert conv1.explicit_pad == (1, 2, 1, 2)  # left, right, top, bottom: the extra pixel after
    assert layers(spec)[0].output_shape == (28, 28, 4)


@pytest.mark.parametrize("name", SPECS)
def test_weights_round_trip_in_the_canonical_layout(name: str) -> None:
    spec = SPECS[name]
    weights = random_weights(spec, 5)
    model = lc.build(spec, "float64")
    lc.set_weights(model, weights)
    back = lc.get_weights(model)
    assert list(back) == list(weights)
    for key, value in weights.items():
        np.testing.assert_array_equal(back[key], value)


def test_set_weights_rejects_a_wrong_shape() -> None:
    spec = ModelSpec()
    weights = init_weights(spec)
    weights["dense1.kernel"] = weights["dense1.kernel"].T
    with pytest.raises(ValueError, match="dense1.kernel"):
        lc.set_weights(lc.build(spec), weights)


@pytest.mark.parametrize("name", ["seed", "strided-rgb"])
def test_gradients_match_central_finite_differences_in_float64(name: str) -> None:
    spec = SPECS[name]
    model = lc.build(spec, "float64")
    weights = random_weights(spec, 7)
    lc.set_weights(model, weights)
    x = images(spec, 4, seed=1, dtype="float64")
    y = np.arange(4) % spec.num_classes
    loss, grads = lc.loss_and_grads(model, x, y)
    assert list(grads) == list(weights)
    rng = np.random.default_rng(0)
    eps = 1e-6
    for key, value in weights.items():
        for flat in rng.choice(value.size, size=min(4, value.size), replace=False):
            index = np.unravel_index(flat, value.shape)
            shifted = {k: v.copy() for k, v in weights.items()}
            shifted[key][index] += eps
            lc.set_weights(model, shifted)
            up, _ = lc.loss_and_grads(model, x, y)
            shifted[key][index] -= 2 * eps
            lc.set_weights(model, shifted)
            down, _ = lc.loss_and_grads(model, x, y)
            numeric = (up - down) / (2 * eps)
            assert grads[key][index] == pytest.approx(numeric, rel=1e-5, abs=1e-8), key
    lc.set_weights(model, weights)
    assert lc.loss_and_grads(model, x, y)[0] == pytest.approx(loss, rel=1e-12)


def test_feature_maps_are_the_nhwc_outputs_of_conv_and_pool_layers() -> None:
    spec = SPECS["strided-rgb"]
    weights = random_weights(spec, 2)
    model = lc.build(spec, "float64")
    lc.set_weights(model, weights)
    x = images(spec, 3, dtype="float64")
    maps = lc.feature_maps(model, x)
    assert list(maps) == ["conv1", "pool1", "conv2"]
    shapes = {layer.name: layer.output_shape for layer in layers(spec)}
    for name, value in maps.items():
        assert value.dtype == np.float32
        assert value.shape == (3, *shapes[name])
    # conv1 after its activation, recomputed in NumPy (the head of the network only)
    head = dataclasses.replace(spec, conv=spec.conv[:1], dense=(), num_classes=2)
    (top, bottom), (left, right) = layers(spec)[0].pad
    padded = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    kernel, bias = weights["conv1.kernel"], weights["conv1.bias"]
    ho, wo, _ = shapes["conv1"]
    expected = sum(
        np.einsum(
            "nhwc,cf->nhwf",
            padded[:, i : i + 2 * (ho - 1) + 1 : 2, j : j + 2 * (wo - 1) + 1 : 2, :],
            kernel[i, j],
        )
        for i in range(4)
        for j in range(4)
    )
    assert layers(head)[0].output_shape == shapes["conv1"]
    np.testing.assert_allclose(maps["conv1"], np.tanh(expected + bias), rtol=1e-5, atol=1e-6)


def test_evaluate_and_predict_agree_with_the_logits() -> None:
    spec = ModelSpec()
    model = lc.build(spec)
    x = images(spec, 2500)  # more than one evaluation batch
    y = np.random.default_rng(1).integers(0, 10, 2500)
    logits = lc.predict_logits(model, x).astype(np.float64)
    probabilities = lc.predict(model, x)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    loss, accuracy, predictions = lc.evaluate(model, x, y)
    log_softmax = logits - logits.max(1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(1, keepdims=True))
    assert loss == pytest.approx(-log_softmax[np.arange(2500), y].mean(), rel=1e-5)
    assert predictions.dtype == np.int64
    np.testing.assert_array_equal(predictions, logits.argmax(1))
    assert accuracy == pytest.approx(np.mean(predictions == y))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((28, 28, 1), np.float32), "single image"),
        (np.zeros((2, 1, 28, 28), np.float32), "NHWC"),
        (np.zeros((2, 28, 28, 1), np.uint8), "dtype"),
    ],
)
def test_predict_rejects_images_of_the_wrong_shape_or_dtype(bad: np.ndarray, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        lc.predict(lc.build(ModelSpec()), bad)


def test_train_steps_equal_the_plain_loop_on_the_same_batches() -> None:
    spec, train_spec = ModelSpec(), TrainSpec(batch_size=16)
    x = images(spec, 48)
    y = np.random.default_rng(2).integers(0, 10, 48)
    weights = init_weights(spec)
    run = lc.plain_torch_train(spec, train_spec, x, y, init_weights=weights, epochs=1)
    from cnn_common.batches import epoch_batches

    batches = [(x[idx], y[idx]) for idx in epoch_batches(48, 16, train_spec.seed, 0)]
    model = lc.build(spec)
    lc.set_weights(model, weights)
    assert lc.train_steps(model, train_spec, batches) == run.step_losses
    for key, value in lc.get_weights(model).items():
        np.testing.assert_array_equal(value, run.weights[key])


def keras_adam_numpy(w, grads, lr, b1, b2, eps):  # noqa: ANN001, ANN201 - test helper
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        m = m + (g - m) * (1 - b1)
        v = v + (g * g - v) * (1 - b2)
        w = w - lr * math.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
    return w


@pytest.mark.parametrize("eps", [1e-7, 1e-1])
def test_keras_adam_follows_the_keras_update_rule(eps: float) -> None:
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(5, 3))
    grads = [rng.normal(size=(5, 3)) * 10.0**-k for k in range(4)]  # shrinking: eps matters
    param = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    spec = TrainSpec(learning_rate=0.01, epsilon=eps, epsilon_convention="keras")
    optimizer = lc.make_optimizer([param], spec)
    assert isinstance(optimizer, lc.KerasAdam)
    for g in grads:
        param.grad = torch.from_numpy(g.copy())
        optimizer.step()
    expected = keras_adam_numpy(w0, grads, 0.01, 0.9, 0.999, eps)
    np.testing.assert_allclose(param.detach().numpy(), expected, rtol=1e-12, atol=1e-15)
    if eps > 1e-3:  # a large epsilon separates the two conventions clearly
        torch_param = torch.nn.Parameter(torch.from_numpy(w0.copy()))
        torch_adam = lc.make_optimizer(
            [torch_param], dataclasses.replace(spec, epsilon_convention="torch")
        )
        for g in grads:
            torch_param.grad = torch.from_numpy(g.copy())
            torch_adam.step()
        assert not np.allclose(torch_param.detach().numpy(), expected, rtol=1e-6)


def test_make_optimizer_reads_every_setting_of_the_spec() -> None:
    param = torch.nn.Parameter(torch.zeros(3))
    adam = lc.make_optimizer(
        [param], TrainSpec(learning_rate=0.5, beta_1=0.8, beta_2=0.99, epsilon=1e-4)
    )
    assert isinstance(adam, torch.optim.Adam)
    group = adam.param_groups[0]
    assert (group["lr"], group["betas"], group["eps"]) == (0.5, (0.8, 0.99), 1e-4)
    sgd = lc.make_optimizer([param], TrainSpec(optimizer="sgd", learning_rate=0.1, momentum=0.5))
    assert isinstance(sgd, torch.optim.SGD)
    # PyTorch's momentum form: v = mu*v + g; w -= lr*v
    for _ in range(2):
        param.grad = torch.ones(3)
        sgd.step()
    np.testing.assert_allclose(param.detach().numpy(), -0.1 * (1 + 1.5), rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_and_load_round_trip_through_a_lightning_checkpoint(tmp_path, dtype: str) -> None:
    spec = SPECS["strided-rgb"]
    model = lc.build(spec, dtype)
    path = tmp_path / "model.ckpt"
    lc.save(model, path)
    loaded = lc.load(path)
    assert isinstance(loaded, lc.LitCNN)
    assert loaded.model_spec == spec
    assert next(loaded.parameters()).dtype == getattr(torch, dtype)
    x = images(spec, 4)
    np.testing.assert_array_equal(lc.predict_logits(loaded, x), lc.predict_logits(model, x))
    # the file is an ordinary Lightning checkpoint, readable with weights_only loading
    same = lc.LitCNN.load_from_checkpoint(path, weights_only=True)
    np.testing.assert_array_equal(lc.predict_logits(same, x), lc.predict_logits(model, x))
    # a bare CNN saves too
    lc.save(model.model, tmp_path / "bare.ckpt")
    np.testing.assert_array_equal(
        lc.predict_logits(lc.load(tmp_path / "bare.ckpt"), x), lc.predict_logits(model, x)
    )


def test_load_of_a_missing_file_is_a_user_error(tmp_path) -> None:
    from cnn_common.errors import UserError

    with pytest.raises(UserError, match="does not exist"):
        lc.load(tmp_path / "nothing.ckpt")
