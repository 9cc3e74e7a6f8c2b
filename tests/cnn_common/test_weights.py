"""cnn_common.weights: canonical names, Glorot init, the digest, the safetensors file, the
PyTorch layout (checked against the float64 reference of tests/reference.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from cnn_common.errors import DataError, UserError, WeightsError
from cnn_common.spec import ConvBlock, DenseLayer, ModelSpec, TrainSpec, layers, weight_shapes
from cnn_common.weights import (
    check_weight_shapes,
    check_weights,
    from_torch_layout,
    glorot_uniform,
    init_weights,
    load_weights,
    save_weights,
    to_torch_layout,
    weight_names,
    weights_digest,
)
from tests.reference import reference_logits

SPECS = {
    "seed": ModelSpec(),
    "same-3-blocks": ModelSpec(
        conv=(
            ConvBlock(filters=4, kernel_size=3, padding="same"),
            ConvBlock(filters=6, kernel_size=3, padding="same"),
            ConvBlock(filters=8, kernel_size=3, padding="same"),
        ),
        dense=(DenseLayer(units=12),),
    ),
    "same-stride2-even-no-pool": ModelSpec(
        input_shape=(11, 9, 2),
        conv=(
            ConvBlock(filters=3, kernel_size=4, stride=2, padding="same", pool_size=0),
            ConvBlock(
                filters=5, kernel_size=3, stride=2, padding="same", activation="tanh", pool_size=0
            ),
        ),
        dense=(DenseLayer(units=7, activation="sigmoid"), DenseLayer(units=6)),
        num_classes=4,
    ),
    "no-conv": ModelSpec(input_shape=(5, 4, 3), conv=(), dense=(), num_classes=3),
}


def random_weights(spec: ModelSpec, seed: int = 0) -> dict[str, np.ndarray]:
    """Every tensor random (biases too), float64, so no permutation can hide behind zeros."""
    rng = np.random.default_rng(seed)
    return {name: rng.normal(size=shape) for name, shape in weight_shapes(spec).items()}


# ----------------------------------------------------------------------------- names, init


def test_weight_names_in_layer_order() -> None:
    assert weight_names(ModelSpec()) == [
        "conv1.kernel",
        "conv1.bias",
        "conv2.kernel",
        "conv2.bias",
        "dense1.kernel",
        "dense1.bias",
        "logits.kernel",
        "logits.bias",
    ]


def test_init_weights_glorot_limits_and_zero_biases() -> None:
    weights = init_weights(ModelSpec(), seed=0)
    assert list(weights) == weight_names(ModelSpec())
    # limit = sqrt(6 / (fan_in + fan_out)); a conv's fans are KH*KW*C_in and KH*KW*F
    limits = {
        "conv1.kernel": np.sqrt(6 / (5 * 5 * 1 + 5 * 5 * 16)),
        "conv2.kernel": np.sqrt(6 / (5 * 5 * 16 + 5 * 5 * 32)),
        "dense1.kernel": np.sqrt(6 / (512 + 64)),
        "logits.kernel": np.sqrt(6 / (64 + 10)),
    }
    for name, limit in limits.items():
        w = weights[name]
        assert w.dtype == np.float32 and w.shape == weight_shapes(ModelSpec())[name]
        assert np.abs(w).max() <= limit
        assert np.abs(w).max() > 0.95 * limit  # fills the interval
        # uniform on [-l, l]: mean 0, variance l^2 / 3 (standard error ~ l^2 / sqrt(n))
        n = w.size
        assert abs(float(w.mean())) < 4 * limit / np.sqrt(3 * n)
        assert abs(float(w.var()) - limit**2 / 3) < 4 * limit**2 / np.sqrt(n)
    for name in ("conv1.bias", "conv2.bias", "dense1.bias", "logits.bias"):
        assert weights[name].dtype == np.float32 and not weights[name].any()


def test_init_weights_draw_from_the_init_stream_in_layer_order() -> None:
    # The initial weights are part of every shared-init run: a change must be deliberate.
    # Kernels in layer order from the "init" seed stream (tag 0x1417, no key):
    # SeedSequence([seed, 0x1417, 0]).
    spec = SPECS["same-3-blocks"]
    rng = np.random.default_rng(np.random.SeedSequence([5, 0x1417, 0]))
    weights = init_weights(spec, seed=5, dtype="float64")
    for name, shape in weight_shapes(spec).items():
        if name.endswith(".kernel"):
            np.testing.assert_array_equal(weights[name], glorot_uniform(shape, rng), err_msg=name)


def test_init_weights_same_numbers_in_float32_and_float64_and_reproducible() -> None:
    w64 = init_weights(ModelSpec(), seed=3, dtype="float64")
    w32 = init_weights(ModelSpec(), seed=3, dtype="float32")
    again = init_weights(ModelSpec(), seed=3, dtype="float64")
    other = init_weights(ModelSpec(), seed=4, dtype="float64")
    for name in w64:
        assert w64[name].dtype == np.float64 and w32[name].dtype == np.float32
        np.testing.assert_array_equal(w32[name], w64[name].astype(np.float32))
        np.testing.assert_array_equal(w64[name], again[name])
        if name.endswith(".kernel"):
            assert not np.allclose(w64[name], other[name])


# ----------------------------------------------------------------------------- PyTorch layout


@pytest.mark.parametrize("name", list(SPECS))
def test_torch_layout_round_trip_is_exact(name: str) -> None:
    spec = SPECS[name]
    weights = random_weights(spec)
    torch_weights = to_torch_layout(weights, spec)
    back = from_torch_layout(torch_weights, spec)
    assert list(back) == list(weights)
    for key, value in weights.items():
        np.testing.assert_array_equal(back[key], value)
        assert back[key] is not value  # copies: the caller's arrays are never shared
    assert not np.shares_memory(torch_weights["logits.bias"], weights["logits.bias"])


def test_torch_layout_shapes_of_the_seed_model() -> None:
    torch_weights = to_torch_layout(init_weights(ModelSpec()), ModelSpec())
    shapes = {name: value.shape for name, value in torch_weights.items()}
    assert shapes == {
        "conv1.kernel": (16, 1, 5, 5),
        "conv1.bias": (16,),
        "conv2.kernel": (32, 16, 5, 5),
        "conv2.bias": (32,),
        "dense1.kernel": (64, 512),
        "dense1.bias": (64,),
        "logits.kernel": (10, 64),
        "logits.bias": (10,),
    }
    assert all(v.flags.c_contiguous for v in torch_weights.values())


@pytest.mark.parametrize(("h", "w", "c", "units"), [(4, 4, 32, 64), (3, 5, 2, 7), (1, 1, 6, 3)])
def test_dense_after_flatten_nhwc_equals_nchw_with_converted_kernel(
    h: int, w: int, c: int, units: int
) -> None:
    spec = ModelSpec(input_shape=(h, w, c), conv=(), dense=(DenseLayer(units=units),))
    weights = random_weights(spec, seed=h * w)
    kernel = weights["dense1.kernel"]  # (H*W*C, units), rows in H, W, C order
    torch_kernel = to_torch_layout(weights, spec)["dense1.kernel"]  # (units, C*H*W)
    x = np.random.default_rng(1).normal(size=(5, h, w, c))  # NHWC feature maps
    canonical = x.reshape(5, -1) @ kernel
    torch_like = x.transpose(0, 3, 1, 2).reshape(5, -1) @ torch_kernel.T  # NCHW, C*H*W flatten
    np.testing.assert_allclose(torch_like, canonical, rtol=1e-12, atol=1e-12)
    if h * w > 1 and c > 1:
        # the pitfall: a plain transpose without the row permutation is silently wrong
        naive = x.transpose(0, 3, 1, 2).reshape(5, -1) @ kernel
        assert not np.allclose(naive, canonical, atol=1e-3)


def test_conv_kernel_nhwc_equals_nchw_with_converted_kernel() -> None:
    spec = ModelSpec(input_shape=(7, 6, 3), conv=(ConvBlock(filters=4, kernel_size=3),))
    weights = random_weights(spec)
    kernel = weights["conv1.kernel"]  # (KH, KW, C, F)
    torch_kernel = to_torch_layout(weights, spec)["conv1.kernel"]  # (F, C, KH, KW)
    x = np.random.default_rng(2).normal(size=(2, 7, 6, 3))
    win = sliding_window_view(x, (3, 3), axis=(1, 2))  # (N, Ho, Wo, C, KH, KW)
    nhwc = np.einsum("nhwcij,ijcf->nhwf", win, kernel)
    win_nchw = sliding_window_view(x.transpose(0, 3, 1, 2), (3, 3), axis=(2, 3))  # (N,C,Ho,Wo,..)
    nchw = np.einsum("nchwij,fcij->nfhw", win_nchw, torch_kernel)
    np.testing.assert_allclose(nchw.transpose(0, 2, 3, 1), nhwc, rtol=1e-12, atol=1e-12)


# A whole forward pass in both layouts: the float64 reference (tests/reference.py) on NHWC with
# the canonical weights, torch on NCHW with the converted weights. Equal logits mean every
# transpose and permutation is right.


def torch_forward(spec: ModelSpec, torch_weights: dict[str, np.ndarray], x_nchw: np.ndarray):
    """Logits of ``x (N, C, H, W)`` with PyTorch-layout weights, float64."""
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    acts = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "linear": None}
    t = {name: torch.from_numpy(value) for name, value in torch_weights.items()}
    y = torch.from_numpy(x_nchw)
    for layer in layers(spec):
        if layer.kind == "conv":
            (top, bottom), (left, right) = layer.pad
            y = functional.pad(y, (left, right, top, bottom))  # explicit: TF's placement
            y = functional.conv2d(
                y, t[f"{layer.name}.kernel"], t[f"{layer.name}.bias"], stride=layer.stride
            )
        elif layer.kind == "pool":
            y = functional.max_pool2d(y, layer.kernel_size, layer.stride)
        elif layer.kind == "flatten":
            y = torch.flatten(y, 1)  # C, H, W order
        elif layer.kind in ("dense", "logits"):
            y = functional.linear(y, t[f"{layer.name}.kernel"], t[f"{layer.name}.bias"])
        if layer.kind in ("conv", "dense") and acts[layer.activation] is not None:
            y = acts[layer.activation](y)
    return y.numpy()


@pytest.mark.parametrize("name", list(SPECS))
def test_torch_forward_with_converted_weights_matches_canonical(name: str) -> None:
    pytest.importorskip("torch")
    spec = SPECS[name]
    weights = random_weights(spec, seed=5)
    x = np.random.default_rng(6).uniform(size=(3, *spec.input_shape))  # NHWC
    expected = reference_logits(spec, weights, x)
    assert expected.shape == (3, spec.num_classes)
    got = torch_forward(
        spec, to_torch_layout(weights, spec), np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    )
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


def test_dense_after_flatten_with_torch_linear() -> None:
    torch = pytest.importorskip("torch")
    spec = ModelSpec()
    weights = init_weights(spec, seed=2, dtype="float64")
    x = np.random.default_rng(3).normal(size=(4, 4, 4, 32))  # pool2's NHWC output
    canonical = x.reshape(4, -1) @ weights["dense1.kernel"] + weights["dense1.bias"]
    t = to_torch_layout(weights, spec)
    out = torch.nn.functional.linear(
        torch.flatten(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), 1),
        torch.from_numpy(t["dense1.kernel"]),
        torch.from_numpy(t["dense1.bias"]),
    )
    np.testing.assert_allclose(out.numpy(), canonical, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- files


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_load_round_trip_with_the_spec(tmp_path, dtype: str) -> None:
    spec = SPECS["same-stride2-even-no-pool"]
    train = TrainSpec(epochs=3, optimizer="sgd", dtype=dtype)
    weights = init_weights(spec, seed=1, dtype=dtype)
    weights = {k: v + np.asarray(0.5, dtype) for k, v in weights.items()}  # non-zero biases
    path = tmp_path / "sub" / "weights.safetensors"
    save_weights(path, weights, spec, train, extra={"epoch": 3, "note": "x"})
    assert sorted(p.name for p in path.parent.iterdir()) == ["weights.safetensors"]  # no temp
    loaded, loaded_spec, loaded_train = load_weights(path)
    assert (loaded_spec, loaded_train) == (spec, train)
    assert set(loaded) == set(weights)
    for name, value in weights.items():
        assert loaded[name].dtype == np.dtype(dtype)
        np.testing.assert_array_equal(loaded[name], value)
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        meta = handle.metadata()
    assert meta["layout"] == "canonical-nhwc" and json.loads(meta["epoch"]) == 3


def test_save_without_train_spec_loads_defaults(tmp_path) -> None:
    path = tmp_path / "w.safetensors"
    save_weights(path, init_weights(ModelSpec()), ModelSpec())
    _, model, train = load_weights(path)
    assert (model, train) == (ModelSpec(), TrainSpec())


def test_wrong_shaped_weights_are_rejected_naming_the_tensor(tmp_path) -> None:
    spec = ModelSpec()
    weights = init_weights(spec)
    weights["dense1.kernel"] = weights["dense1.kernel"].T  # (64, 512): the torch shape
    with pytest.raises(
        WeightsError, match=r"dense1\.kernel: expected shape \(512, 64\), got \(64, 512\)"
    ) as info:
        check_weights(spec, weights)
    # a user error (the CLI prints it without a traceback) and still a ValueError
    assert isinstance(info.value, UserError) and isinstance(info.value, ValueError)
    assert "spec" in info.value.hint
    with pytest.raises(ValueError, match=r"dense1\.kernel"):
        save_weights(tmp_path / "w.safetensors", weights, spec)
    assert list(tmp_path.iterdir()) == []  # nothing written
    weights = init_weights(spec)
    del weights["conv2.bias"]
    weights["conv3.kernel"] = np.zeros(1)
    with pytest.raises(
        WeightsError, match=r"missing \['conv2.bias'\], unexpected \['conv3.kernel'\]"
    ):
        check_weights(spec, weights)


def test_check_weight_shapes_against_any_expected_set() -> None:
    expected = {"a.kernel": (2, 3), "a.bias": (3,)}
    check_weight_shapes(expected, {"a.kernel": np.zeros((2, 3)), "a.bias": np.zeros(3)})
    with pytest.raises(WeightsError, match=r"a\.bias: expected shape \(3,\), got \(1, 3\)"):
        check_weight_shapes(expected, {"a.kernel": np.zeros((2, 3)), "a.bias": np.zeros((1, 3))})
    with pytest.raises(WeightsError, match=r"missing \['a.bias'\], unexpected \[\]"):
        check_weight_shapes(expected, {"a.kernel": np.zeros((2, 3))})


# ----------------------------------------------------------------------------- the digest


def test_weights_digest_fingerprints_names_and_values() -> None:
    weights = init_weights(ModelSpec(), seed=0, dtype="float64")
    digest = weights_digest(weights)
    assert len(digest) == 16 and int(digest, 16) >= 0  # 16 hex digits
    assert weights_digest(dict(reversed(list(weights.items())))) == digest  # order-free
    # the float32 values count: the same numbers in float32 or float64 give the same digest
    assert weights_digest({k: v.astype(np.float32) for k, v in weights.items()}) == digest
    assert weights_digest(init_weights(ModelSpec(), seed=0, dtype="float32")) == digest
    assert weights_digest(init_weights(ModelSpec(), seed=1)) != digest
    changed = {k: v.copy() for k, v in weights.items()}
    changed["logits.bias"][3] += 1e-3
    assert weights_digest(changed) != digest
    renamed = {("x." + k if k == "logits.bias" else k): v for k, v in weights.items()}
    assert weights_digest(renamed) != digest


def test_file_whose_tensors_do_not_match_its_spec(tmp_path) -> None:
    from safetensors.numpy import save_file

    from cnn_common.spec import spec_to_dict

    weights = init_weights(ModelSpec())
    path = tmp_path / "w.safetensors"
    other = ModelSpec(dense=(DenseLayer(units=32),))
    save_file(weights, str(path), metadata={"spec": json.dumps(spec_to_dict(other))})
    with pytest.raises(WeightsError, match=r"dense1\.kernel: expected shape \(512, 32\)"):
        load_weights(path)


def test_unreadable_weight_files(tmp_path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_weights(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(DataError, match="junk.safetensors is not a readable safetensors"):
        load_weights(junk)
    from safetensors.numpy import save_file

    bare = tmp_path / "bare.safetensors"
    save_file(init_weights(ModelSpec()), str(bare))
    with pytest.raises(DataError, match="no spec in its metadata"):
        load_weights(bare)


def test_a_dense_layer_after_flatten_and_an_activation_is_reordered_for_pytorch() -> None:
    spec = ModelSpec(
        input_shape=(4, 4, 2),
        layers=[
            {"kind": "conv", "filters": 3, "kernel_size": 3},
            {"kind": "flatten"},
            {"kind": "activation", "activation": "relu"},
            {"kind": "dropout", "rate": 0.5},
            {"kind": "dense", "units": 5},
        ],
        num_classes=2,
    )
    weights = init_weights(spec, seed=1)
    torch_kernel = to_torch_layout(weights, spec)["dense1.kernel"]  # (out, C*H*W)
    canonical = weights["dense1.kernel"]  # (H*W*C, out): row (h*W + w)*C + c
    h, w, c = 2, 2, 3
    for hh, ww, cc in [(0, 0, 0), (1, 0, 2), (1, 1, 1)]:
        np.testing.assert_array_equal(
            torch_kernel[:, (cc * h + hh) * w + ww], canonical[(hh * w + ww) * c + cc]
        )
    back = from_torch_layout(to_torch_layout(weights, spec), spec)
    for name, value in weights.items():
        np.testing.assert_array_equal(back[name], value)
