"""What ``cnn-compare convert`` is asked (``ConvertOptions``), converts (``Source``) and gets
back from its workers (``JobResults``): shared by ``command`` and ``deploy``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnn_common.spec import ModelSpec, TrainSpec
from cnn_common.weights import Weights
from compare.convert.quantize import CALIBRATION_IMAGES, CALIBRATION_SEED

LATENCY_REPEATS = 100  # single-image calls timed for each format (--repeats)


@dataclass(frozen=True)
class ConvertOptions:
    """Everything ``cnn-compare convert`` was asked to do."""

    source: Path
    targets: str = "all"  # comma-separated frameworks, or all (every installed one)
    onnx: bool = False
    litert: bool = False
    quantize: str | None = None  # int8: each deployed format quantized too
    calibration: int = CALIBRATION_IMAGES
    calibration_seed: int = CALIBRATION_SEED
    check: tuple[Path, ...] = ()  # deployed files made elsewhere, measured beside ours
    repeats: int = LATENCY_REPEATS
    out: Path | None = None  # default: SOURCE/converted, or <stem>-converted beside a file
    images: int = 1000
    source_framework: str | None = None  # default: the run's own; numpy's for a weight file
    dataset: str | None = None  # default: the run's dataset; mnist for a weight file
    data_dir: str | None = None

    @property
    def deployment(self) -> bool:
        """True when the deployment table is asked for."""
        return self.onnx or self.litert or bool(self.check)


@dataclass(frozen=True)
class Source:
    """The weights to convert and who computes their reference logits."""

    weights_file: Path
    weights: Weights
    model_spec: ModelSpec
    train_spec: TrainSpec  # its dtype is the weights' own
    framework: str
    dataset: str
    default_out: Path


@dataclass
class JobResults:
    """What the workers computed: the source's logits (``reference``, ``(N, K)``: the whole
    test set for a deployment table, else the first N images), each target's logits of its
    file read back, the source framework's own file predicted on the whole test set and timed
    (``(logits, timing)``, for a deployment table), and each failed job's error."""

    reference: np.ndarray
    converted: dict[str, np.ndarray]
    deployed: tuple[np.ndarray, dict[str, float]] | None
    failures: dict[str, str]
