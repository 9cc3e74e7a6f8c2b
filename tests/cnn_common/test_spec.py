"""cnn_common.spec: the seed model's shapes and counts, 'same' padding, validation, and the
plain-data form of the specs (files and overrides: test_spec_files.py)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from cnn_common.errors import SpecError, UserError
from cnn_common.spec import (
    ConvBlock,
    DenseLayer,
    ModelSpec,
    TrainSpec,
    conv_output_size,
    flops,
    layer_shapes,
    layers,
    param_count,
    same_padding,
    spec_from_dict,
    spec_to_dict,
    weight_shapes,
)

SEED_SHAPES = {
    "conv1": (24, 24, 16),
    "pool1": (12, 12, 16),
    "conv2": (8, 8, 32),
    "pool2": (4, 4, 32),
    "flatten": (512,),
    "dense1": (64,),
    "logits": (10,),
}


def three_same_blocks() -> ModelSpec:
    """Three 3x3 'same' convolutions (8, 16, 32 filters), each followed by 2x2 pooling."""
    return ModelSpec(
        conv=(
            ConvBlock(filters=8, kernel_size=3, padding="same"),
            ConvBlock(filters=16, kernel_size=3, padding="same"),
            ConvBlock(filters=32, kernel_size=3, padding="same"),
        ),
        dense=(DenseLayer(units=64),),
    )


# ----------------------------------------------------------------------------- the seed model


def test_seed_model_param_count() -> None:
    # conv1 5*5*1*16+16, conv2 5*5*16*32+32, dense1 512*64+64, logits 64*10+10
    assert (416, 12_832, 32_832, 650) == (
        5 * 5 * 1 * 16 + 16,
        5 * 5 * 16 * 32 + 32,
        512 * 64 + 64,
        64 * 10 + 10,
    )
    assert param_count(ModelSpec()) == 46_730


def test_seed_model_layer_shapes_and_order() -> None:
    shapes = layer_shapes(ModelSpec())
    assert shapes == SEED_SHAPES
    assert list(shapes) == list(SEED_SHAPES)  # names in build order


def test_seed_model_weight_shapes() -> None:
    assert weight_shapes(ModelSpec()) == {
        "conv1.kernel": (5, 5, 1, 16),
        "conv1.bias": (16,),
        "conv2.kernel": (5, 5, 16, 32),
        "conv2.bias": (32,),
        "dense1.kernel": (512, 64),
        "dense1.bias": (64,),
        "logits.kernel": (64, 10),
        "logits.bias": (10,),
    }


def test_seed_model_flops_match_a_hand_count() -> None:
    conv1 = 24 * 24 * 16 * (2 * 5 * 5 * 1) + 24 * 24 * 16  # multiply-adds, then ReLU
    pool1 = 12 * 12 * 16 * 2 * 2  # each output reads a 2x2 window
    conv2 = 8 * 8 * 32 * (2 * 5 * 5 * 16) + 8 * 8 * 32
    pool2 = 4 * 4 * 32 * 2 * 2
    dense1 = 64 * 2 * 512 + 64
    logits = 10 * 2 * 64  # linear: no activation
    assert conv1 + pool1 + conv2 + pool2 + dense1 + logits == 2_188_608
    assert flops(ModelSpec()) == 2_188_608


def test_three_same_blocks_shapes_and_count() -> None:
    spec = three_same_blocks()
    # 'same' keeps 28 -> 28, 14 -> 14, 7 -> 7; 2x2 pooling floors 28 -> 14 -> 7 -> 3.
    assert layer_shapes(spec) == {
        "conv1": (28, 28, 8),
        "pool1": (14, 14, 8),
        "conv2": (14, 14, 16),
        "pool2": (7, 7, 16),
        "conv3": (7, 7, 32),
        "pool3": (3, 3, 32),
        "flatten": (288,),
        "dense1": (64,),
        "logits": (10,),
    }
    expected = (
        (3 * 3 * 1 * 8 + 8)  # conv1: 80
        + (3 * 3 * 8 * 16 + 16)  # conv2: 1,168
        + (3 * 3 * 16 * 32 + 32)  # conv3: 4,640
        + (3 * 3 * 32 * 64 + 64)  # dense1 reads 3*3*32 = 288: 18,496
        + (64 * 10 + 10)  # logits: 650
    )
    assert expected == 25_034
    assert param_count(spec) == expected
    pads = {layer.name: layer.pad for layer in layers(spec) if layer.kind == "conv"}
    assert pads == {name: ((1, 1), (1, 1)) for name in ("conv1", "conv2", "conv3")}


def test_no_pooling_dropout_and_several_dense_layers() -> None:
    spec = ModelSpec(
        input_shape=(10, 12, 3),
        conv=(ConvBlock(filters=4, kernel_size=3, stride=2, pool_size=0),),
        dense=(DenseLayer(units=20, dropout=0.5), DenseLayer(units=7, activation="tanh")),
        num_classes=3,
    )
    # valid, stride 2: (10 - 3) // 2 + 1 = 4, (12 - 3) // 2 + 1 = 5
    assert layer_shapes(spec) == {
        "conv1": (4, 5, 4),
        "flatten": (80,),
        "dense1": (20,),
        "dropout1": (20,),
        "dense2": (7,),
        "logits": (3,),
    }
    dropout = next(layer for layer in layers(spec) if layer.kind == "dropout")
    assert dropout.rate == 0.5 and not dropout.params
    assert param_count(spec) == (3 * 3 * 3 * 4 + 4) + (80 * 20 + 20) + (20 * 7 + 7) + (7 * 3 + 3)


def test_pool_stride_differs_from_pool_size() -> None:
    spec = ModelSpec(conv=(ConvBlock(filters=2, kernel_size=3, pool_size=3, pool_stride=2),))
    # conv 28 - 3 + 1 = 26; pool (26 - 3) // 2 + 1 = 12
    assert layer_shapes(spec)["pool1"] == (12, 12, 2)


# ----------------------------------------------------------------------------- 'same' padding


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [
        (28, 3, 1, (1, 1)),
        (28, 5, 1, (2, 2)),
        (28, 4, 1, (1, 2)),  # even kernel: the odd pixel goes after (TensorFlow)
        (28, 2, 1, (0, 1)),
        (28, 5, 2, (1, 2)),  # out 14: (14-1)*2 + 5 - 28 = 3
        (28, 3, 2, (0, 1)),  # out 14: 26 + 3 - 28 = 1
        (27, 3, 2, (1, 1)),  # out 14: 26 + 3 - 27 = 2
        (28, 1, 2, (0, 0)),  # a 1x1 stride-2 window needs no padding
        (7, 4, 3, (1, 2)),  # out 3: 2*3 + 4 - 7 = 3
        (5, 7, 1, (3, 3)),  # kernel larger than the input
    ],
)
def test_same_padding_tensorflow_placement(
    size: int, kernel: int, stride: int, expected: tuple[int, int]
) -> None:
    assert same_padding(size, kernel, stride) == expected
    before, after = expected
    # 'same' means ceil(size / stride) outputs
    assert (size + before + after - kernel) // stride + 1 == -(-size // stride)


@pytest.mark.parametrize(("kernel", "stride"), [(3, 2), (4, 1), (5, 2), (2, 2)])
def test_same_conv_layer_uses_those_pads(kernel: int, stride: int) -> None:
    spec = ModelSpec(
        input_shape=(28, 27, 1),
        conv=(ConvBlock(filters=3, kernel_size=kernel, stride=stride, padding="same"),),
    )
    conv1 = layers(spec)[0]
    assert conv1.pad == (same_padding(28, kernel, stride), same_padding(27, kernel, stride))
    assert conv1.output_shape == (-(-28 // stride), -(-27 // stride), 3)


# ----------------------------------------------------------------------------- validation


def _model_error(**kwargs: object) -> SpecError:
    with pytest.raises(SpecError) as info:
        ModelSpec(**kwargs)  # type: ignore[arg-type]
    return info.value


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"conv": (ConvBlock(padding="full"),)}, ["conv[0].padding", "'full'", "valid", "same"]),
        ({"conv": (ConvBlock(filters=0),)}, ["conv[0].filters", ">= 1", "0"]),
        ({"conv": (ConvBlock(), ConvBlock(kernel_size=-1))}, ["conv[1].kernel_size"]),
        ({"conv": (ConvBlock(stride=0),)}, ["conv[0].stride"]),
        ({"conv": (ConvBlock(activation="gelu"),)}, ["conv[0].activation", "relu"]),
        ({"dense": (DenseLayer(dropout=-0.1),)}, ["dense[0].dropout", "-0.1", "[0.0, 1.0)"]),
        ({"dense": (DenseLayer(dropout=1.0),)}, ["dense[0].dropout"]),
        ({"dense": (DenseLayer(units=0),)}, ["dense[0].units"]),
        ({"num_classes": 1}, ["num_classes", ">= 2"]),
        ({"input_shape": (28, 28)}, ["input_shape", "(H, W, C)"]),
        ({"input_shape": (28, 0, 1)}, ["input_shape[1]"]),
        ({"conv": (ConvBlock(filters=True),)}, ["conv[0].filters"]),  # a bool is not a count
    ],
)
def test_bad_model_field_is_named(kwargs: dict, names: list[str]) -> None:
    err = _model_error(**kwargs)
    assert isinstance(err, ValueError) and isinstance(err, UserError)
    for name in names:
        assert name in err.message
    assert err.hint  # every error says what to do


def test_kernel_larger_than_its_input_names_the_layer() -> None:
    # conv1 5x5 on 8x8 -> 4x4, pool -> 2x2: the second 5x5 kernel no longer fits
    err = _model_error(input_shape=(8, 8, 1))
    assert "layer conv2" in err.message and "5x5" in err.message and "2x2" in err.message
    assert "conv[1].kernel_size" in err.hint
    err = _model_error(input_shape=(4, 4, 1))
    assert "layer conv1" in err.message


def test_pool_window_larger_than_its_input_names_the_layer() -> None:
    err = _model_error(input_shape=(5, 5, 1), conv=(ConvBlock(filters=2, kernel_size=5),))
    assert "layer pool1" in err.message and "1x1" in err.message


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"beta_2": 1.0}, "beta_2"),
        ({"epsilon": -1e-8}, "epsilon"),
        ({"epsilon_convention": "tf"}, "epsilon_convention"),
        ({"momentum": 1.5}, "momentum"),
        ({"seed": -1}, "seed"),
        ({"validation_size": -5}, "validation_size"),
        ({"augment_shift": 1.5}, "augment_shift"),
        ({"dtype": "float16"}, "dtype"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"weight_decay": float("inf")}, "weight_decay"),
        ({"weight_decay_convention": "adamw"}, "weight_decay_convention"),
        ({"weight_decay_on": "biases"}, "weight_decay_on"),
        ({"lr_schedule": "linear"}, "lr_schedule"),
        ({"lr_step_size": 0}, "lr_step_size"),
        ({"lr_gamma": 1.0}, "lr_gamma"),
        ({"lr_gamma": 0}, "lr_gamma"),
        ({"lr_warmup": -1}, "lr_warmup"),
        ({"lr_warmup": 1.5}, "lr_warmup"),
        ({"lr_interval": "batch"}, "lr_interval"),
    ],
)
def test_bad_train_field_is_named(kwargs: dict, name: str) -> None:
    with pytest.raises(SpecError) as info:
        TrainSpec(**kwargs)
    assert info.value.message.startswith(name + " must be")
    assert name in info.value.hint


def test_train_spec_defaults_state_the_optimiser() -> None:
    t = TrainSpec()
    assert (t.epochs, t.batch_size, t.optimizer, t.learning_rate) == (5, 128, "adam", 1e-3)
    assert (t.beta_1, t.beta_2, t.epsilon, t.epsilon_convention) == (0.9, 0.999, 1e-8, "torch")
    assert (t.validation_size, t.augment_shift, t.dtype, t.seed) == (5000, 0, "float32", 0)


def test_specs_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ModelSpec().num_classes = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainSpec().epochs = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "names"),
    [
        ({"model": {"filterz": 3}}, ["filterz", "'model'"]),
        ({"train": {"epoch": 3}}, ["epoch", "'train'"]),
        ({"model": {"conv": [{"filters": 8, "kernal_size": 3}]}}, ["kernal_size", "ConvBlock"]),
        ({"model": {"dense": [{"unit": 8}]}}, ["unit", "DenseLayer"]),
        ({"model": {"conv": [3]}}, ["ConvBlock", "3"]),
        ({"modle": {}}, ["modle"]),
        ({"model": {"conv": 3}}, ["'model'"]),
    ],
)
def test_unknown_or_malformed_field_is_named(data: dict, names: list[str]) -> None:
    with pytest.raises(SpecError) as info:
        spec_from_dict(data)
    for name in names:
        assert name in info.value.message


def test_lists_and_mappings_become_blocks() -> None:
    from_plain = ModelSpec(
        input_shape=[28, 28, 1],  # type: ignore[arg-type]
        conv=[{"filters": 16}, {"filters": 32}],  # type: ignore[list-item]
        dense=[{"units": 64}],  # type: ignore[list-item]
    )
    assert from_plain == ModelSpec()


# ----------------------------------------------------------------------------- plain data


def test_spec_to_dict_is_json_and_round_trips() -> None:
    model = ModelSpec(
        input_shape=(32, 30, 3),
        conv=(ConvBlock(filters=8, kernel_size=3, padding="same", pool_size=0),),
        dense=(DenseLayer(units=40, dropout=0.25),),
        num_classes=5,
    )
    train = TrainSpec(epochs=2, optimizer="sgd", dtype="float64", seed=9)
    data = spec_to_dict(model, train)
    assert json.loads(json.dumps(data)) == data  # plain lists and dicts, no tuples
    assert data["model"]["input_shape"] == [32, 30, 3]
    assert data["model"]["conv"][0]["padding"] == "same"
    assert data["train"]["seed"] == 9
    assert spec_from_dict(json.loads(json.dumps(data))) == (model, train)
    assert set(spec_to_dict(model)) == {"model"}


def test_missing_sections_take_the_defaults() -> None:
    assert spec_from_dict({}) == (ModelSpec(), TrainSpec())
    assert spec_from_dict({"model": None, "train": {"epochs": 2}}) == (
        ModelSpec(),
        TrainSpec(epochs=2),
    )
    with pytest.raises(SpecError, match="must be a mapping"):
        spec_from_dict([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "pad", "expected"),
    [(28, 5, 1, 0, 24), (24, 2, 2, 0, 12), (28, 3, 1, 2, 28), (10, 3, 2, 0, 4), (4, 5, 1, 0, 0)],
)
def test_conv_output_size(size: int, kernel: int, stride: int, pad: int, expected: int) -> None:
    assert conv_output_size(size, kernel, stride, pad) == expected
