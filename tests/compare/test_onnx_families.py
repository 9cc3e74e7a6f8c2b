"""The ONNX graph of the layer-list specs: BatchNormalization from the running statistics with
the spec's epsilon, Add wired as ``Layer.inputs`` says, grouped and bias-free Conv, average and
global average pooling, standalone activations; onnxruntime's logits match the float64
reference's (``tests/reference.py``) in evaluation mode."""

from __future__ import annotations

import numpy as np
import pytest

from cnn_common.spec import ModelSpec, layers
from tests.contract.families import FAMILIES, KINDS, family_weights, random_images
from tests.reference import reference_logits

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from compare.convert import onnx_export  # noqa: E402

SPECS = {"kinds": KINDS, **FAMILIES}


def attribute(node, name: str):  # noqa: ANN001, ANN201 - an onnx NodeProto and its value
    from onnx import helper

    return next(helper.get_attribute_value(a) for a in node.attribute if a.name == name)


@pytest.mark.parametrize("spec_name", SPECS)
def test_onnxruntime_logits_match_the_reference_in_evaluation_mode(
    spec_name: str, tmp_path
) -> None:
    """Weights off their initial values (running statistics included): a statistic dropped,
    swapped or read in training mode shows in the logits."""
    spec = SPECS[spec_name]
    weights = family_weights(spec, 2)
    x = random_images(spec, 6, 2)
    path = tmp_path / "model.onnx"
    onnx_export.save_onnx(onnx_export.onnx_model(spec, weights), path)
    logits = onnx_export.run_onnx(path, x)
    assert logits.shape == (6, spec.num_classes) and logits.dtype == np.float32
    expected = reference_logits(spec, weights, x)
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-5)
    assert np.abs(expected - reference_logits(spec, weights, x, training=True)).max() > 1e-3


def test_resnet_graph_is_wired_as_the_layers_say() -> None:
    spec = FAMILIES["resnet_small"]
    weights = family_weights(spec, 1)
    model = onnx_export.onnx_model(spec, weights)
    nodes = {node.name: node for node in model.graph.node}
    assert sorted(i.name for i in model.graph.initializer) == sorted(weights)
    by_layer = {layer.name: layer for layer in layers(spec)}
    for name, layer in by_layer.items():
        if layer.kind == "add":
            assert list(nodes[name].input) == list(layer.inputs), name
            assert nodes[name].op_type == "Add"
        elif layer.kind == "batchnorm":
            node = nodes[name]
            assert node.op_type == "BatchNormalization"
            assert list(node.input[1:]) == [
                f"{name}.{t}" for t in ("gamma", "beta", "moving_mean", "moving_variance")
            ]
            assert attribute(node, "epsilon") == pytest.approx(layer.epsilon)
        elif layer.kind == "conv":
            assert list(nodes[name].input[1:]) == [f"{name}.kernel"]  # no bias
    # stage2's projection reads the block's input, as its first conv does
    assert nodes["stage2_proj"].input[0] == nodes["stage2_conv1"].input[0] == "stage1_relu2"
    ops = [node.op_type for node in model.graph.node]
    assert ops[-3:] == ["GlobalAveragePool", "Flatten", "Gemm"]
    assert ops.count("Add") == 3 and ops.count("BatchNormalization") == 9


def test_depthwise_convolutions_carry_their_group() -> None:
    spec = FAMILIES["mobilenet_small"]
    model = onnx_export.onnx_model(spec, family_weights(spec, 1))
    groups = {n.name: attribute(n, "group") for n in model.graph.node if n.op_type == "Conv"}
    assert groups == {layer.name: layer.groups for layer in layers(spec) if layer.kind == "conv"}
    assert groups["dw4"] == 128 and groups["pw4"] == 1


def test_kinds_graph_has_avgpool_standalone_activations_and_no_dropout() -> None:
    model = onnx_export.onnx_model(KINDS, family_weights(KINDS, 1))
    nodes = {node.name: node for node in model.graph.node}
    assert nodes["act1"].op_type == "Sigmoid" and nodes["relu"].op_type == "Relu"
    assert nodes["avg"].op_type == "AveragePool"
    assert list(attribute(nodes["avg"], "kernel_shape")) == [2, 2]
    assert nodes["join"].input[1] == "act1"
    assert "Dropout" not in {node.op_type for node in model.graph.node}
    epsilons = {
        n.name: attribute(n, "epsilon") for n in model.graph.node if n.op_type.startswith("Batch")
    }
    assert epsilons == pytest.approx({"bn1": 1e-3, "bn2": 1e-5})


@pytest.mark.parametrize("spec_name", FAMILIES)
def test_float64_graphs_pass_the_checker(spec_name: str) -> None:
    """float64 initializers and images (onnxruntime runs them in float32: ``RUNTIME_DTYPE``)."""
    spec: ModelSpec = FAMILIES[spec_name]
    model = onnx_export.onnx_model(spec, family_weights(spec, 1, "float64"), "float64")
    assert {i.data_type for i in model.graph.initializer} == {11}  # TensorProto.DOUBLE
