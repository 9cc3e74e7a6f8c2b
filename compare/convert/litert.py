"""LiteRT (TensorFlow Lite): the model written through Keras's own LiteRT export from the
canonical weights, and run in the ``ai-edge-litert`` interpreter.

The export runs in the keras worker (Keras on TensorFlow, ``compare.convert.task``): the
contract's ``build`` + ``set_weights`` make the Keras model of any run's weights, and
``Model.export(format="litert")`` writes it. The converter may use the LiteRT builtin ops
only: a model that would need TensorFlow ops beside them (the "select TF ops", which an app
must ship a TensorFlow kernel library for) is refused with their names. int8 is the
converter's post-training static quantization: weights and activations in int8, scales
calibrated on a representative dataset of training images; the input and output stay float32,
so every format is fed and read the same way.

ai-edge-litert is an optional extra (``pip install -e ".[litert]"``): it is imported only
inside the functions that run a file.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cnn_common.errors import UserError
from cnn_common.machine import usable_cores
from cnn_common.spec import ModelSpec, layers

INSTALL = 'pip install -e ".[litert]"'
RUNTIME_DTYPE = "float32"  # LiteRT's float kernels are float32, as onnxruntime's Conv is
# the converter's own names for the ops it could not lower to builtins
_OPS_LINE = re.compile(r"^(?:TF Select|Custom|Flex) ops: (.+)$", re.MULTILINE)
# ops an int8 model runs in float32 although it is quantized: the edges, and no arithmetic
_EDGE_OPS = {"QUANTIZE", "DEQUANTIZE", "DELEGATE"}


def available() -> bool:
    """True when the interpreter (ai-edge-litert) and the exporter (TensorFlow) are installed."""
    return all(importlib.util.find_spec(n) is not None for n in ("ai_edge_litert", "tensorflow"))


def check_available() -> None:
    """Raise ``UserError`` with the install command when LiteRT export cannot run here."""
    if not available():
        raise UserError(
            "LiteRT export needs ai-edge-litert (the interpreter) and TensorFlow (Keras's "
            "exporter), which are not both installed",
            INSTALL,
        )


def unsupported_ops(message: str) -> list[str]:
    """The TensorFlow ops a converter error names as outside the LiteRT builtins."""
    names = [name.strip() for line in _OPS_LINE.findall(message) for name in line.split(",")]
    return list(dict.fromkeys(n for n in names if n))


def export(model: Any, path: str | Path, calibration: np.ndarray | None = None) -> None:
    """Write the Keras model ``model`` (TensorFlow backend) to ``path`` as LiteRT: float32,
    or int8 calibrated on ``calibration`` (``(N, H, W, C)`` training images) when given.

    Raises ``UserError`` naming the ops when the model needs TensorFlow ops outside the
    LiteRT builtins."""
    import tensorflow as tf

    options: dict[str, Any] = {
        "target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]},
    }
    if calibration is not None:
        images = np.asarray(calibration, np.float32)

        def representative() -> Iterator[list[np.ndarray]]:
            for i in range(len(images)):  # one image at a time: the signature's batch of 1
                yield [images[i : i + 1]]

        options |= {
            "optimizations": [tf.lite.Optimize.DEFAULT],
            "representative_dataset": representative,
        }
    try:
        model.export(str(path), format="litert", verbose=False, **options)
    except Exception as exc:  # the converter raises its own ConverterError
        ops = unsupported_ops(str(exc))
        if not ops:
            raise
        raise UserError(
            f"the model needs TensorFlow ops outside the LiteRT builtins: {', '.join(ops)}",
            "write those layers with builtin ops, or deploy through ONNX (--onnx)",
        ) from None


class Runner:
    """A ``.tflite`` file loaded in the LiteRT interpreter: ``runner(x)`` gives the logits
    ``(N, K)`` of images ``x (N, H, W, C)``; a damaged file raises ``UserError``."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        try:
            self.interpreter = Interpreter(
                model_path=str(path), num_threads=threads or usable_cores()
            )
            self.interpreter.allocate_tensors()
            (self.input,) = self.interpreter.get_input_details()
            (self.output,) = self.interpreter.get_output_details()
        except (ValueError, RuntimeError) as exc:
            raise UserError(
                f"{path} is not a LiteRT model that can be loaded ({exc})".replace("\n", " "),
                "write it again (`cnn-compare convert RUN --litert`) or give an intact .tflite",
            ) from None
        self.batch = int(self.input["shape"][0])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if len(x) != self.batch:  # the input's batch size is fixed until resized
            self.interpreter.resize_tensor_input(self.input["index"], list(x.shape))
            self.interpreter.allocate_tensors()
            self.batch = len(x)
        self.interpreter.set_tensor(self.input["index"], np.ascontiguousarray(x, np.float32))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"]).copy()

    def float_layers(self, spec: ModelSpec) -> list[str]:
        """The spec's layers that compute in float32: in an int8 model, those the converter
        could not quantize (none is quantized in a float model)."""
        tensors = {t["index"]: t for t in self.interpreter.get_tensor_details()}
        names = [layer.name for layer in layers(spec)]
        found: list[str] = []
        for op in self.interpreter._get_ops_details():  # the only listing of a model's ops
            if op["op_name"] in _EDGE_OPS:
                continue
            inputs = [tensors[i] for i in op["inputs"] if i >= 0]
            if not inputs or inputs[0]["dtype"] != np.float32:
                continue
            # Keras names each op's output tensor after its layer: "cnn_1/conv1_1/Relu"
            label = " ".join(tensors[i]["name"] for i in op["outputs"])
            found += [n for n in names if re.search(rf"/{re.escape(n)}(_\d+)?/", label)]
        return list(dict.fromkeys(found))
