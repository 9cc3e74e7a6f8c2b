"""The model as an ONNX graph, built from the spec and the canonical weights, and run with
onnxruntime: one exporter for every framework, since every framework's weights convert to
the canonical layout.

The graph takes NHWC images (``images``, ``(N, H, W, C)``, the project's layout), transposes
them once to NCHW (ONNX's Conv is NCHW only), and follows ``cnn_common.spec.layers``, each
layer reading the tensors its ``Layer.inputs`` name: Conv with the spec's explicit pads, its
``group`` and its bias where it has one, then its activation; BatchNormalization in evaluation
mode (the running statistics, used as stored, and the spec's epsilon); standalone activations;
MaxPool, AveragePool, GlobalAveragePool (then Flatten to ``(N, C)``), Flatten, Add, Gemm for
every dense layer; dropout is left out (the identity at inference). It outputs ``logits``
``(N, K)``.

Weights: an NCHW graph is PyTorch's layout (Conv weights ``(F, C, KH, KW)``, a flatten in
C, H, W order), so the initializers are ``cnn_common.weights.to_torch_layout`` of the canonical
weights: the one conversion the project already has and tests, rather than a second
permutation of the first dense layer here (or a transpose back to NHWC inside the graph).

onnx and onnxruntime are an optional extra (``pip install -e ".[onnx]"``): they are imported
inside the functions that need them, never when this module is.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cnn_common.batches import epoch_batches
from cnn_common.data import training_data
from cnn_common.errors import UserError
from cnn_common.files import atomic_write_bytes
from cnn_common.spec import IMAGE, Layer, ModelSpec, TrainSpec, layers, spec_to_dict
from cnn_common.weights import Weights, check_weights, init_weights, to_torch_layout
from compare.parity.locate import TOLERANCES, relative_difference

if TYPE_CHECKING:
    import onnx

OPSET = 17  # Conv, MaxPool, Gemm, Flatten as used here are unchanged since opset 13
IR_VERSION = 8  # the IR of opset 17: readable by onnxruntime >= 1.17 (pyproject's floor)
INPUT = "images"
OUTPUT = "logits"
NCHW = "images/nchw"  # the image transposed; no layer name has a slash
ACTIVATIONS = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid", "linear": None}
# onnxruntime's CPU provider has no double kernel for Conv (NOT_IMPLEMENTED; see
# tests/compare/test_onnx.py), so a float64 model is exported and run in float32.
RUNTIME_DTYPE = "float32"
INSTALL = 'pip install -e ".[onnx]"'
STEP0_LOGITS = "step0/forward/logits"  # in each framework's parity.npz


def available() -> bool:
    """True when both onnx and onnxruntime are installed (checked without importing them)."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime"))


def check_available() -> None:
    """Raise ``UserError`` with the install command when onnx or onnxruntime is missing."""
    if not available():
        raise UserError("ONNX export needs onnx and onnxruntime, which are not installed", INSTALL)


def onnx_model(spec: ModelSpec, weights: Weights, dtype: str = RUNTIME_DTYPE) -> onnx.ModelProto:
    """The ONNX model of ``spec`` holding ``weights`` (canonical layout) as ``dtype``
    initializers; input ``images (N, H, W, C)``, output ``logits (N, K)``; checked."""
    import onnx
    from onnx import helper, numpy_helper

    check_weights(spec, weights)
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    initializers = [
        numpy_helper.from_array(np.asarray(value, dtype=dtype), name)
        for name, value in to_torch_layout(weights, spec).items()
    ]
    nodes = [helper.make_node("Transpose", [INPUT], [NCHW], name="nhwc_to_nchw", perm=[0, 3, 1, 2])]
    tensors = {IMAGE: NCHW}  # the graph's tensor holding each layer's output, by layer name
    for layer in layers(spec):
        made = _layer_nodes(layer, [tensors[src] for src in layer.inputs])
        nodes += made
        # dropout (the identity at inference) and a linear activation add no node
        tensors[layer.name] = made[-1].output[0] if made else tensors[layer.inputs[0]]
    h, w, c = spec.input_shape
    graph = helper.make_graph(
        nodes,
        "cnn_rosetta",
        [helper.make_tensor_value_info(INPUT, elem, ["N", h, w, c])],
        [helper.make_tensor_value_info(OUTPUT, elem, ["N", spec.num_classes])],
        initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="cnn-rosetta",
    )
    helper.set_model_props(model, {"spec": json.dumps(spec_to_dict(spec)), "input": "NHWC"})
    onnx.checker.check_model(model, full_check=True)
    return model


def _layer_nodes(layer: Layer, inputs: list[str]) -> list[onnx.NodeProto]:
    """The nodes computing ``layer`` from the graph's tensors ``inputs`` (NCHW maps), the
    last one writing the tensor named like the layer; none for the identities."""
    from onnx import helper

    name, x = layer.name, inputs[0]
    op = ACTIVATIONS[layer.activation]
    linear = name if op is None else f"{name}/linear"
    activation = [] if op is None else [helper.make_node(op, [linear], [name], name=f"{name}/{op}")]
    k, s = layer.kernel_size, layer.stride
    if layer.kind == "conv":
        (top, bottom), (left, right) = layer.pad
        params = [
            x,
            f"{name}.kernel",
            *([f"{name}.bias"] if f"{name}.bias" in layer.params else []),
        ]
        conv = helper.make_node(
            "Conv",
            params,
            [linear],
            name=name,
            kernel_shape=[k, k],
            strides=[s, s],
            pads=[top, left, bottom, right],  # ONNX: all begins, then all ends
            group=layer.groups,  # weights (F, C_in / groups, KH, KW), as PyTorch's
        )
        return [conv, *activation]
    if layer.kind == "batchnorm":  # evaluation mode: the stored statistics, used as they are
        stats = [f"{name}.{t}" for t in ("gamma", "beta", "moving_mean", "moving_variance")]
        return [
            helper.make_node(
                "BatchNormalization", [x, *stats], [name], name=name, epsilon=layer.epsilon
            )
        ]
    if layer.kind == "activation":
        return [helper.make_node(op, [x], [name], name=name)] if op is not None else []
    if layer.kind in ("pool", "avgpool"):
        pool = "MaxPool" if layer.kind == "pool" else "AveragePool"
        return [helper.make_node(pool, [x], [name], name=name, kernel_shape=[k, k], strides=[s, s])]
    if layer.kind == "global_avgpool":  # (N, C, H, W) -> (N, C, 1, 1) -> (N, C)
        return [
            helper.make_node("GlobalAveragePool", [x], [f"{name}/map"], name=name),
            helper.make_node("Flatten", [f"{name}/map"], [name], name=f"{name}/flatten", axis=1),
        ]
    if layer.kind == "flatten":  # (N, C, H, W) -> (N, C*H*W): PyTorch's order
        return [helper.make_node("Flatten", [x], [name], name=name, axis=1)]
    if layer.kind in ("dense", "logits"):  # x @ kernel.T + bias, kernel (out, in)
        gemm = helper.make_node(
            "Gemm", [x, f"{name}.kernel", f"{name}.bias"], [linear], name=name, transB=1
        )
        return [gemm, *activation]
    if layer.kind == "add":
        return [helper.make_node("Add", inputs, [name], name=name)]
    return []  # dropout: the identity at inference


def save_onnx(model: onnx.ModelProto, path: str | Path) -> None:
    """Write ``model`` to ``path`` atomically."""
    atomic_write_bytes(path, model.SerializeToString())


def predictor(
    model: onnx.ModelProto | str | Path, threads: int | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    """``predict(x)``: the logits ``(N, K)`` of ``model`` (or an ``.onnx`` file) for images
    ``x (N, H, W, C)``, computed by one onnxruntime session on the CPU in the model's input
    dtype (``threads`` intra-op threads, default onnxruntime's); a file onnxruntime cannot
    load raises ``UserError``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    if threads:
        options.intra_op_num_threads = threads
    source = str(model) if isinstance(model, str | Path) else model.SerializeToString()
    try:
        session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own errors (InvalidProtobuf, Fail) share no base
        if not isinstance(model, str | Path):
            raise
        raise UserError(
            f"{model} is not an ONNX model onnxruntime can load ({exc})".replace("\n", " "),
            "write it again (`cnn-compare convert RUN --onnx`) or give an intact .onnx",
        ) from None
    feed = session.get_inputs()[0]
    dtype = {"tensor(float)": np.float32, "tensor(double)": np.float64}[feed.type]
    return lambda x: session.run(None, {feed.name: np.ascontiguousarray(x, dtype=dtype)})[0]


def run_onnx(model: onnx.ModelProto | str | Path, x: np.ndarray) -> np.ndarray:
    """Logits ``(N, K)`` of ``model`` (or an ``.onnx`` file) for images ``x (N, H, W, C)``,
    computed by onnxruntime on the CPU in the model's input dtype."""
    return predictor(model)(x)


def parity_reference(
    recorded: dict[str, dict[str, np.ndarray]],
    spec: ModelSpec,
    train: TrainSpec,
    dataset: str,
    data_dir: str | None,
) -> dict[str, float] | None:
    """For ``cnn-compare parity``: the max relative difference (``max |a - b| / max |b|``)
    between each framework's step-0 logits (``step0/forward/logits``) and onnxruntime's on the
    same batch from the shared initial weights; None when onnxruntime is not installed.

    A forward-only reference from a runtime none of the frameworks share, in float32 (see
    ``RUNTIME_DTYPE``) whatever the run's dtype.
    """
    if not available():
        return None
    data = training_data(dataset, train, root=data_dir)
    first = epoch_batches(len(data.x_train), train.batch_size, train.seed, 0)[0]
    model = onnx_model(spec, init_weights(spec, train.seed, train.dtype))
    reference = run_onnx(model, data.x_train[first])  # (B, K)
    return {
        name: relative_difference(arrays[STEP0_LOGITS], reference, norm=False)[0]
        for name, arrays in recorded.items()
        if STEP0_LOGITS in arrays  # absent with --steps 0
    }


def parity_lines(reference: dict[str, float] | None) -> list[str]:
    """What ``cnn-compare parity`` prints about the onnxruntime reference."""
    if reference is None:
        return [f"onnxruntime: not installed, no forward-only reference ({INSTALL} adds it)"]
    tolerance = TOLERANCES[RUNTIME_DTYPE]["forward"]
    return [
        f"onnxruntime vs {name}: step-0 logits, max relative difference {value:.2g} "
        f"({'within' if value <= tolerance else 'over'} {tolerance:g}, float32)"
        for name, value in reference.items()
    ]
