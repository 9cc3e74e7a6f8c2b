"""The ONNX model built from the spec: it passes the checker, has the expected ops, and
onnxruntime's logits match the NumPy network's, 'same' padding, tanh and dropout included."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from cnn_common.spec import ConvBlock, DenseLayer, ModelSpec, TrainSpec
from cnn_common.weights import init_weights

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import numpy_cnn  # noqa: E402
from compare.convert import onnx_export  # noqa: E402

# 28x28 -> conv1 'same' 3x3 -> pool -> 14x14 -> conv2 'same' 3x3 stride 2: the total padding
# is odd (1), so TensorFlow's placement puts it all after: pads (0, 1) on each axis.
SAME = ModelSpec(
    conv=(
        ConvBlock(filters=4, kernel_size=3, padding="same", activation="tanh"),
        ConvBlock(
            filters=6, kernel_size=3, stride=2, padding="same", activation="sigmoid", pool_size=0
        ),
    ),
    dense=(DenseLayer(units=12, activation="tanh", dropout=0.5),),
)


def weights_and_images(spec: ModelSpec, dtype: str = "float32"):
    """Random weights (biases not zero, so a misplaced bias shows) and images ``(8, 28, 28, 1)``."""
    rng = np.random.default_rng(3)
    weights = {
        name: (value + 0.1 * rng.standard_normal(value.shape)).astype(dtype)
        for name, value in init_weights(spec, 1, "float64").items()
    }
    return weights, rng.random((8, *spec.input_shape)).astype(dtype)


def numpy_logits(spec: ModelSpec, weights, x: np.ndarray) -> np.ndarray:
    model = numpy_cnn.build(spec, x.dtype.name)
    numpy_cnn.set_weights(model, weights)
    return numpy_cnn.predict_logits(model, x)


def test_seed_model_graph_has_the_expected_ops_and_matches_numpy() -> None:
    spec = ModelSpec()
    weights, x = weights_and_images(spec)
    model = onnx_export.onnx_model(spec, weights)
    ops = [node.op_type for node in model.graph.node]
    assert ops == [
        "Transpose",
        *("Conv", "Relu", "MaxPool") * 2,
        "Flatten",
        *("Gemm", "Relu"),
        "Gemm",
    ]
    assert [i.name for i in model.graph.input] == ["images"]
    assert [o.name for o in model.graph.output] == ["logits"]
    assert sorted(i.name for i in model.graph.initializer) == sorted(weights)
    logits = onnx_export.run_onnx(model, x)
    assert logits.shape == (8, 10) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, numpy_logits(spec, weights, x), rtol=0, atol=1e-5)


def test_same_padding_tanh_sigmoid_and_dropout(tmp_path) -> None:
    """Asymmetric pads go in ONNX's order (begins, then ends); dropout is left out."""
    weights, x = weights_and_images(SAME)
    model = onnx_export.onnx_model(SAME, weights)
    conv = {node.name: node for node in model.graph.node if node.op_type == "Conv"}
    pads = {
        name: next(a.ints for a in node.attribute if a.name == "pads")
        for name, node in conv.items()
    }
    assert pads == {"conv1": [1, 1, 1, 1], "conv2": [0, 0, 1, 1]}
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("Tanh") == 2 and ops.count("Sigmoid") == 1 and "Dropout" not in ops
    path = tmp_path / "model.onnx"
    onnx_export.save_onnx(model, path)
    logits = onnx_export.run_onnx(path, x)  # from the file, as convert reads it
    np.testing.assert_allclose(logits, numpy_logits(SAME, weights, x), rtol=0, atol=1e-5)


def test_float64_graph_is_valid_but_onnxruntime_has_no_float64_conv() -> None:
    """Why ``RUNTIME_DTYPE`` is float32: should this fail, onnxruntime runs float64 Conv and
    float64 models can be exported (and held to 1e-10) as they are."""
    import onnxruntime

    weights, x = weights_and_images(ModelSpec(), "float64")
    model = onnx_export.onnx_model(ModelSpec(), weights, "float64")  # passes the checker
    with pytest.raises(onnxruntime.capi.onnxruntime_pybind11_state.NotImplemented, match="Conv"):
        onnx_export.run_onnx(model, x)
    assert onnx_export.RUNTIME_DTYPE == "float32"


def test_wrong_weights_are_refused() -> None:
    weights, _ = weights_and_images(ModelSpec())
    del weights["logits.bias"]
    with pytest.raises(ValueError, match="logits.bias"):
        onnx_export.onnx_model(ModelSpec(), weights)


def test_importing_the_module_imports_no_onnx() -> None:
    code = (
        "import sys, compare.convert.onnx_export, compare.parity.command\n"
        "assert not {'onnx', 'onnxruntime'} & set(sys.modules), sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_parity_reference_is_numpy_step0_logits(mnist, data_dir) -> None:
    """The parity helper runs batch 0 of the shared order from the shared initial weights."""
    from cnn_common.batches import epoch_batches
    from compare.parity.command import without_dropout

    spec, train = without_dropout(SAME), TrainSpec(batch_size=32)
    first = epoch_batches(len(mnist.x_train), train.batch_size, train.seed, 0)[0]
    model = numpy_cnn.build(spec)
    numpy_cnn.set_weights(model, init_weights(spec, train.seed))
    x, y = mnist.x_train[first], mnist.y_train[first]
    recorded = {
        "numpy": {"step0/forward/logits": numpy_cnn.layer_trace(model, x, y)["forward/logits"]}
    }
    reference = onnx_export.parity_reference(recorded, spec, train, "mnist", str(data_dir))
    assert set(reference) == {"numpy"} and reference["numpy"] <= 1e-6
    (line,) = onnx_export.parity_lines(reference)
    assert line.startswith("onnxruntime vs numpy: step-0 logits") and "within" in line
    assert "pip install" in onnx_export.parity_lines(None)[0]
