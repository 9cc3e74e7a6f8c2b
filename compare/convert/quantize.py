"""int8: post-training static quantization, and the calibration images both formats share.

ONNX goes through onnxruntime's quantization tools: ``quant_pre_process`` first (its graph
optimiser folds each BatchNormalization into the Conv before it, as a deployed model would
have it), then ``quantize_static`` in the QDQ format, weights per output channel, weights and
activations int8, scales from the calibration images. LiteRT gets the same images as its
converter's representative dataset (``compare.convert.litert``).

The calibration images are drawn from the training set without replacement by a seeded
generator: their number and seed are recorded in ``convert.json``, so the same call quantizes
the same way again.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from cnn_common.errors import UserError
from cnn_common.spec import ModelSpec, layers

FORMATS = ("int8",)
CALIBRATION_IMAGES = 500  # enough for stable scales; more changes the int8 logits by < 1e-3
CALIBRATION_SEED = 0
CALIBRATION_BATCH = 100  # images per calibration call of onnxruntime
# ops that only move or reshape a tensor: a float one among them computes nothing
_MOVES = {"QuantizeLinear", "DequantizeLinear", "Transpose", "Flatten", "Reshape"}


def calibration_images(
    x_train: np.ndarray, count: int, seed: int = CALIBRATION_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """``(indices (count,), images (count, H, W, C))``: ``count`` training images drawn without
    replacement by ``numpy.random.default_rng(seed)``; too many raises ``UserError``."""
    if not 1 <= count <= len(x_train):
        raise UserError(
            f"--calibration {count}: the calibration set must hold 1 to {len(x_train):,} "
            "images (the training set's size)",
            f"use --calibration N with 1 <= N <= {len(x_train)}",
        )
    indices = np.sort(np.random.default_rng(seed).choice(len(x_train), count, replace=False))
    return indices, x_train[indices]


def quantize_onnx(float_path: Path, out_path: Path, images: np.ndarray, input_name: str) -> None:
    """Write the int8 (QDQ) model of the float ONNX model ``float_path`` to ``out_path``,
    calibrated on ``images (N, H, W, C)`` fed to the input ``input_name``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Images(CalibrationDataReader):
        def __init__(self) -> None:
            batches = range(0, len(images), CALIBRATION_BATCH)
            self.feeds = iter(
                {input_name: np.ascontiguousarray(images[i : i + CALIBRATION_BATCH], np.float32)}
                for i in batches
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory() as scratch:
        folded = Path(scratch) / "folded.onnx"
        # the shapes are static but for the batch: no symbolic inference needed
        quant_pre_process(str(float_path), str(folded), skip_symbolic_shape=True)
        quantize_static(
            str(folded),
            str(out_path),
            Images(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
        )


def float_layers(model: Any, spec: ModelSpec) -> list[str]:
    """The spec's layers left in float32 in the quantized ONNX ``model`` (or ``.onnx`` file):
    a node that computes and reads a tensor no DequantizeLinear wrote. (A BatchNormalization
    folded into its Conv is quantized with it.)"""
    import onnx

    if isinstance(model, str | Path):
        model = onnx.load(model)
    dequantized = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    names = {layer.name for layer in layers(spec)}
    found = [
        node.name.partition("/")[0]  # node names are the layers' ("conv1", "pool/flatten")
        for node in model.graph.node
        if node.op_type not in _MOVES and node.input and node.input[0] not in dequantized
    ]
    return list(dict.fromkeys(n for n in found if n in names))
