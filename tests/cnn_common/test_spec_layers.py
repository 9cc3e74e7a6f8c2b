"""cnn_common.spec's layer-list form: names, inputs, shapes, counts, the residual shorthand,
the example specs, the plain-data round trip and what a wrong list is told."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from cnn_common.errors import SpecError
from cnn_common.spec import (
    IMAGE,
    LayerSpec,
    ModelSpec,
    feature_map_layers,
    flops,
    layers,
    param_count,
    spec_from_dict,
    spec_to_dict,
    state_count,
    trainable_shapes,
    weight_shapes,
)
from cnn_common.spec_files import apply_overrides, load_spec
from cnn_common.weights import init_weights, weight_names

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SEED_FLOPS = flops(ModelSpec())


def listed(*items: dict) -> ModelSpec:
    return ModelSpec(layers=[LayerSpec(**item) for item in items])


def test_the_seed_model_written_as_a_list_is_the_seed_model() -> None:
    spec = listed(
        {"kind": "conv", "filters": 16, "kernel_size": 5, "activation": "relu"},
        {"kind": "maxpool"},
        {"kind": "conv", "filters": 32, "kernel_size": 5, "activation": "relu"},
        {"kind": "maxpool"},
        {"kind": "flatten"},
        {"kind": "dense", "units": 64, "activation": "relu"},
    )
    assert layers(spec) == layers(ModelSpec())
    assert weight_shapes(spec) == weight_shapes(ModelSpec())
    assert flops(spec) == SEED_FLOPS


def test_block_form_layers_read_the_layer_before() -> None:
    unrolled = layers(ModelSpec())
    assert [layer.inputs for layer in unrolled] == [
        (IMAGE,),
        *[(before.name,) for before in unrolled[:-1]],
    ]
    assert feature_map_layers(ModelSpec()) == ["conv1", "pool1", "conv2", "pool2"]


def test_batchnorm_depthwise_and_global_pooling_shapes_and_counts() -> None:
    spec = listed(
        {"kind": "conv", "filters": 8, "kernel_size": 3, "padding": "same", "bias": False},
        {"kind": "batchnorm", "momentum": 0.01, "momentum_convention": "keras"},
        {"kind": "activation", "activation": "relu"},
        {"kind": "conv", "filters": 16, "kernel_size": 3, "groups": 8, "stride": 2},
        {"kind": "avgpool", "pool_size": 2},
        {"kind": "global_avgpool"},
    )
    by_name = {layer.name: layer for layer in layers(spec)}
    assert list(by_name) == ["conv1", "bn1", "relu1", "conv2", "avgpool1", "gap1", "logits"]
    assert by_name["conv1"].params == {"conv1.kernel": (3, 3, 1, 8)}  # no bias
    bn = by_name["bn1"]
    assert bn.params == {"bn1.gamma": (8,), "bn1.beta": (8,)}
    assert bn.state == {"bn1.moving_mean": (8,), "bn1.moving_variance": (8,)}
    assert (bn.momentum, bn.epsilon, bn.momentum_convention, bn.variance) == (
        0.01,
        1e-5,
        "keras",
        "unbiased",
    )
    # groups 8: each of the 16 filters reads 8 / 8 = 1 channel; (28 - 3) // 2 + 1 = 13
    assert by_name["conv2"].params["conv2.kernel"] == (3, 3, 1, 16)
    assert by_name["conv2"].output_shape == (13, 13, 16)
    assert by_name["avgpool1"].output_shape == (6, 6, 16)
    assert by_name["gap1"].output_shape == (16,)
    assert by_name["logits"].inputs == ("gap1",)
    assert param_count(spec) == 3 * 3 * 8 + 2 * 8 + (3 * 3 * 16 + 16) + (16 * 10 + 10)
    assert state_count(spec) == 2 * 8
    assert set(weight_shapes(spec)) - set(trainable_shapes(spec)) == {
        "bn1.moving_mean",
        "bn1.moving_variance",
    }
    conv1 = 28 * 28 * 8 * 2 * 9
    conv2 = 13 * 13 * 16 * 2 * 9 * 1
    expected = (
        conv1
        + 2 * 28 * 28 * 8  # batchnorm: scale and shift
        + 28 * 28 * 8  # relu
        + conv2  # linear: no activation count
        + 6 * 6 * 16 * 4  # avgpool reads 2x2 windows
        + 6 * 6 * 16  # global average pooling reads every input
        + 10 * 2 * 16
    )
    assert flops(spec) == expected
    assert feature_map_layers(spec) == ["conv1", "bn1", "conv2", "avgpool1"]


def test_residual_shorthand_unrolls_with_a_projection_only_where_the_shape_changes() -> None:
    spec = listed(
        {"kind": "conv", "filters": 8, "kernel_size": 3, "padding": "same"},
        {"kind": "residual", "filters": 8, "bias": False},
        {"kind": "residual", "name": "down", "filters": 16, "stride": 2},
        {"kind": "global_avgpool"},
    )
    unrolled = {layer.name: layer for layer in layers(spec)}
    same = [name for name in unrolled if name.startswith("res1_")]
    assert same == [
        "res1_conv1",
        "res1_bn1",
        "res1_relu1",
        "res1_conv2",
        "res1_bn2",
        "res1_add",
        "res1_relu2",
    ]
    assert unrolled["res1_conv1"].inputs == ("conv1",)
    assert unrolled["res1_add"].inputs == ("res1_bn2", "conv1")  # identity shortcut
    assert "res1_conv1.bias" not in unrolled["res1_conv1"].params
    assert unrolled["down_proj"].inputs == ("res1_relu2",)
    assert unrolled["down_proj"].kernel_size == 1 and unrolled["down_proj"].stride == 2
    assert unrolled["down_add"].inputs == ("down_bn2", "down_projbn")
    assert unrolled["down_add"].output_shape == (14, 14, 16)
    assert "down_conv1.bias" in unrolled["down_conv1"].params


def test_add_joins_a_named_layer_and_input_reads_one() -> None:
    spec = listed(
        {"kind": "conv", "name": "a", "filters": 4, "kernel_size": 3, "padding": "same"},
        {"kind": "conv", "name": "b", "filters": 4, "kernel_size": 3, "padding": "same"},
        {"kind": "add", "join": "a"},
        {"kind": "conv", "name": "side", "input": "a", "filters": 4, "kernel_size": 1},
        {"kind": "add", "join": "add1"},
        {"kind": "flatten"},
    )
    unrolled = {layer.name: layer for layer in layers(spec)}
    assert unrolled["add1"].inputs == ("b", "a")
    assert unrolled["side"].inputs == ("a",)
    assert unrolled["add2"].inputs == ("side", "add1")


@pytest.mark.parametrize(
    ("items", "words"),
    [
        (
            [{"kind": "conv", "filters": 4, "kernel_size": 3}, {"kind": "add", "join": "input"}],
            ["add1", "(26, 26, 4)", "(28, 28, 1)", "shapes differ"],
        ),
        ([{"kind": "add", "join": "nowhere"}, {"kind": "flatten"}], ["nowhere", "input"]),
        ([{"kind": "conv", "filters": 4, "groups": 3}, {"kind": "flatten"}], ["groups 3"]),
        ([{"kind": "conv", "filters": 4}], ["ends with a feature map", "global_avgpool"]),
        ([{"kind": "flatten"}, {"kind": "batchnorm"}], ["batchnorm", "feature map"]),
        ([{"kind": "dense", "units": 3}], ["dense", "flatten"]),
        ([{"kind": "batchnorm", "momentum_convention": "tf"}, {"kind": "flatten"}], ["'tf'"]),
        ([{"kind": "batchnorm", "variance": "sample"}, {"kind": "flatten"}], ["variance"]),
        ([{"kind": "pool"}], ["kind", "maxpool"]),
        ([{"kind": "flatten", "name": "x"}, {"kind": "dense", "name": "x", "units": 2}], ["twice"]),
        ([{"kind": "flatten", "name": "a.b"}], ["not a layer name"]),
        ([{"kind": "conv", "filters": 2, "kernel_size": 29}, {"kind": "flatten"}], ["fit"]),
        (
            [{"kind": "conv", "filters": 2, "trainable": "no"}, {"kind": "flatten"}],
            ["layers[0].trainable must be true or false", "'no'"],
        ),
        (
            [{"kind": "batchnorm", "frozen_batchnorm": "eval"}, {"kind": "flatten"}],
            ["frozen_batchnorm must be one of ['batch', 'inference']", "'eval'"],
        ),
        ([{"kind": "maxpool", "trainable": False}], ["a maxpool layer has no field(s)"]),
        ([{"kind": "flatten", "trainable": False}], ["trainable"]),
    ],
)
def test_a_wrong_layer_list_is_named(items: list[dict], words: list[str]) -> None:
    with pytest.raises(SpecError) as info:
        spec_from_dict({"model": {"layers": items}})
    text = str(info.value)
    for word in words:
        assert word in text, (word, text)


def test_a_field_of_another_kind_and_both_forms_are_refused() -> None:
    with pytest.raises(SpecError, match=r"a maxpool layer has no field\(s\) \['units'\]"):
        spec_from_dict({"model": {"layers": [{"kind": "maxpool", "units": 3}]}})
    with pytest.raises(SpecError, match="no field"):
        ModelSpec(layers=[LayerSpec("flatten", units=3)])
    with pytest.raises(SpecError, match="one form"):
        spec_from_dict({"model": {"conv": [{"filters": 2}], "layers": [{"kind": "flatten"}]}})


def test_a_frozen_layer_keeps_its_weights_but_is_not_trained() -> None:
    """``trainable: false`` takes a layer's tensors out of ``trainable_shapes`` (and the
    trained parameter count), not out of the weights; a residual block freezes all its convs
    and batchnorms; only a frozen batchnorm in inference mode stops using batch statistics."""
    spec = spec_from_dict(
        {
            "model": {
                "input_shape": [8, 8, 1],
                "layers": [
                    {"kind": "conv", "name": "c", "filters": 2, "trainable": False},
                    {"kind": "residual", "name": "r", "filters": 4, "trainable": False},
                    {"kind": "batchnorm", "name": "b", "trainable": False},
                    {
                        "kind": "batchnorm",
                        "name": "i",
                        "trainable": False,
                        "frozen_batchnorm": "inference",
                    },
                    {"kind": "global_avgpool"},
                ],
            }
        }
    )[0]
    assert sorted(trainable_shapes(spec)) == ["logits.bias", "logits.kernel"]
    assert param_count(spec) == 4 * 10 + 10
    assert set(weight_shapes(spec)) > set(trainable_shapes(spec))
    frozen = [layer.name for layer in layers(spec) if layer.params and not layer.trainable]
    assert frozen == ["c", "r_conv1", "r_bn1", "r_conv2", "r_bn2", "r_proj", "r_projbn", "b", "i"]
    statistics = [layer.name for layer in layers(spec) if layer.batch_statistics]
    assert statistics == ["r_bn1", "r_bn2", "r_projbn", "b"]
    assert spec_from_dict(spec_to_dict(spec))[0] == spec


@pytest.mark.parametrize("name", ["resnet_small", "vgg_small", "mobilenet_small"])
def test_example_specs_round_trip_and_cost_at_most_three_seed_models(name: str) -> None:
    model, train = load_spec(EXAMPLES / f"{name}.yaml")
    assert spec_from_dict(spec_to_dict(model, train)) == (model, train)
    assert flops(model) <= 3 * SEED_FLOPS
    assert any(layer.kind == "batchnorm" for layer in layers(model))
    weights = init_weights(model, seed=0)
    assert list(weights) == weight_names(model) == list(weight_shapes(model))
    bn = next(layer.name for layer in layers(model) if layer.kind == "batchnorm")
    assert (weights[f"{bn}.gamma"] == 1).all() and (weights[f"{bn}.moving_variance"] == 1).all()
    assert (weights[f"{bn}.beta"] == 0).all() and (weights[f"{bn}.moving_mean"] == 0).all()
    assert sum(math.prod(v.shape) for v in weights.values()) == param_count(model) + state_count(
        model
    )


def test_the_seed_spec_file_is_written_as_before() -> None:
    model = spec_to_dict(ModelSpec())["model"]
    assert "layers" not in model and set(model) == {"input_shape", "conv", "dense", "num_classes"}
    listed_model = spec_to_dict(load_spec(EXAMPLES / "resnet_small.yaml")[0])["model"]
    assert "conv" not in listed_model and "dense" not in listed_model


def test_overrides_reach_a_layer_of_the_list() -> None:
    model, train = load_spec(EXAMPLES / "vgg_small.yaml")
    changed, _ = apply_overrides(model, train, ["layers.0.filters=4", "layers.1.momentum=0.2"])
    assert changed.layers[0].filters == 4 and changed.layers[1].momentum == 0.2
    with pytest.raises(SpecError, match="no field 'units'"):
        apply_overrides(model, train, ["layers.0.units=4"])
