"""The kernel view recomputes one output value from a framework's own layer outputs."""

from __future__ import annotations

import numpy as np
import pytest

import numpy_cnn
from cnn_common.graph import IMAGE
from cnn_common.spec import ModelSpec, feature_map_layers, layers
from cnn_common.spec_files import load_spec
from compare.serve.explain import check_position, explain, receptive_field
from tests.contract.families import EXAMPLES, family_weights, random_images


def traced(spec: ModelSpec, weights: dict) -> tuple[dict, np.ndarray]:
    model = numpy_cnn.build(spec)
    numpy_cnn.set_weights(model, weights)
    x = random_images(spec, 1, seed=3)
    trace = numpy_cnn.layer_trace(model, x, np.zeros(1, dtype=np.int64))
    outputs = {k.partition("/")[2]: v[0] for k, v in trace.items() if k.startswith("forward/")}
    outputs[IMAGE] = x[0]
    return outputs, x


@pytest.mark.parametrize("name", ["seed", "resnet_small", "mobilenet_small"])
def test_every_map_value_is_recomputed_from_its_inputs(name: str) -> None:
    spec = ModelSpec() if name == "seed" else load_spec(EXAMPLES / f"{name}.yaml")[0]
    weights = family_weights(spec, seed=1)
    outputs, _ = traced(spec, weights)
    rng = np.random.default_rng(0)
    kinds = set()
    by_name = {layer.name: layer for layer in layers(spec)}
    for layer_name in feature_map_layers(spec):
        layer = by_name[layer_name]
        h, w, c = layer.output_shape
        for _ in range(3):
            row, col, ch = (int(rng.integers(n)) for n in (h, w, c))
            done = explain(layer, outputs, weights, row, col, ch)
            kinds.add(done["kind"])
            assert done["output"] == pytest.approx(done["computed"], rel=1e-4, abs=1e-5)
            assert done["difference"] == pytest.approx(done["output"] - done["computed"])
    expected = {"seed": {"conv", "pool"}, "resnet_small": {"conv", "batchnorm", "add"}}
    assert expected.get(name, {"conv", "batchnorm"}) <= kinds


def test_the_numbers_shown_are_the_ones_summed() -> None:
    spec = ModelSpec()
    weights = family_weights(spec, seed=2)
    outputs, _ = traced(spec, weights)
    conv2 = {layer.name: layer for layer in layers(spec)}["conv2"]
    done = explain(conv2, outputs, weights, 2, 3, 4)
    patch, kernel, products = (np.array(done[k]) for k in ("patch", "kernel", "products"))
    assert patch.shape == kernel.shape == (5, 5, conv2.input_shape[2])
    assert np.allclose(products, patch * kernel)
    assert done["dot"] == pytest.approx(products.sum())
    assert done["pre_activation"] == pytest.approx(done["dot"] + done["bias"])
    assert done["computed"] == pytest.approx(max(done["pre_activation"], 0.0))
    pool1 = {layer.name: layer for layer in layers(spec)}["pool1"]
    done = explain(pool1, outputs, weights, 1, 1, 0)
    assert done["computed"] == pytest.approx(np.max(done["patch"]))


def test_the_receptive_field_walks_back_to_the_image() -> None:
    spec = ModelSpec()  # conv 5x5, pool 2, conv 5x5, pool 2 on 28x28
    by_name = {layer.name: layer for layer in layers(spec)}
    assert receptive_field(by_name, "conv1", (0, 1, 0, 1), (28, 28)) == (0, 5, 0, 5)
    assert receptive_field(by_name, "pool1", (0, 1, 0, 1), (28, 28)) == (0, 6, 0, 6)
    assert receptive_field(by_name, "conv2", (1, 2, 1, 2), (28, 28)) == (2, 16, 2, 16)
    assert receptive_field(by_name, "pool2", (3, 4, 3, 4), (28, 28)) == (12, 28, 12, 28)
    # TensorFlow's 'same' padding of a stride-2 3x3 on 28 pixels: none above, one below
    resnet = load_spec(EXAMPLES / "resnet_small.yaml")[0]
    res_layers = {layer.name: layer for layer in layers(resnet)}
    assert receptive_field(res_layers, "stem", (0, 1, 0, 1), (28, 28)) == (0, 3, 0, 3)
    assert receptive_field(res_layers, "stem", (13, 14, 13, 14), (28, 28)) == (26, 28, 26, 28)


def test_a_position_outside_the_map_is_named() -> None:
    conv1 = layers(ModelSpec())[0]
    with pytest.raises(ValueError, match=r"conv1 is 24x24x\d+"):
        check_position(conv1, 24, 0, 0)
