"""Where the frameworks of a run differ by default, what the run used, and whether it
neutralised the difference: the report's differences table (docs/design.md: surface the
differences, do not hide them).

Each framework declares its own defaults (``FrameworkInfo.native``, one sentence per topic of
``cnn_common.framework.TOPICS``); this module adds only what the run itself decided.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cnn_common.errors import SpecError
from cnn_common.framework import TOPICS
from cnn_common.schedule import describe
from cnn_common.spec import TrainSpec
from compare.engine import registry

NOT_INSTALLED = "unknown: the framework is not installed here"


@dataclass(frozen=True)
class Difference:
    topic: str  # the row's title: "Adam epsilon"
    native: dict[str, str]  # framework -> its default, in the run's framework order
    this_run: str  # what every framework used in this run
    neutralised: str  # yes | no | n/a, with why
    key: str = ""  # the topic of cnn_common.framework.TOPICS ("" for run-level rows)


def native_default(framework: str, topic: str) -> str:
    """What ``framework`` does by default on ``topic``; a name not registered here (a run
    rendered on another machine) says so instead of failing the report."""
    info = registry.frameworks().get(framework)
    return info.native[topic] if info is not None else NOT_INSTALLED


def _decay_and_schedule(train: dict[str, Any]) -> str:
    """``; <weight decay and schedule in words>`` when the run had either (a record written
    before they existed has neither)."""
    try:
        words = describe(TrainSpec(**train))
    except (TypeError, SpecError):  # another version's fields
        return ""
    return f"; {words}" if words else ""


def _run_level(config: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    """topic -> (title, this run, neutralised), from the run configuration alone."""
    train = config.get("train", {})
    model = config.get("model", {})
    shared = config.get("init") == "shared"
    start = (
        "shared: one Glorot-uniform set from cnn_common, loaded into every framework"
        if shared
        else "native: each framework's own initialisers"
    )
    if config.get("init_from"):  # cnn-compare run --init-from (cnn_common.transfer)
        start = (
            f"transfer: the matching layers of {config['init_from']}, the others one "
            "Glorot-uniform set from cnn_common, loaded into every framework"
        )
    eps = f"{train.get('epsilon')} ({train.get('epsilon_convention')} convention)"
    has_same = any(block.get("padding") == "same" for block in model.get("conv", []))
    return {
        "adam_epsilon": (
            "Adam epsilon",
            f"{train.get('optimizer')}: epsilon {eps}" + _decay_and_schedule(train),
            "yes: each framework implements the spec's convention",
        ),
        "init": (
            "Initial weights",
            start,
            "yes: identical starting weights" if shared else "no (--init native)",
        ),
        "layout": (
            "Tensor layout",
            "canonical NHWC weights, converted once",
            "yes: cnn_common.weights converts to and from PyTorch's layout",
        ),
        "flatten": (
            "Flatten order",
            "H, W, C (canonical)",
            "yes: the first dense layer's rows are permuted for PyTorch",
        ),
        "same_padding": (
            "'same' padding",
            "TensorFlow's placement, explicit pads" if has_same else "not used (valid)",
            "yes: pads computed once in cnn_common.spec" if has_same else "n/a",
        ),
        "batch_order": (
            "Batch order",
            "cnn_common.batches.epoch_batches(seed, epoch)",
            "yes: the same index batches in every framework",
        ),
        "loss_logging": (
            "Loss curve",
            "every step's own loss",
            "yes: the run record keeps per-step losses from every framework",
        ),
        "accuracy": (
            "Accuracy",
            "micro (correct / total)",
            "yes: every framework counts correct / total (torchmetrics: average='micro')",
        ),
        "kernels": (
            "Float32 kernels",
            f"{train.get('dtype')}",
            "no: rounding differs by kernel; `cnn-compare parity` measures it",
        ),
        "float64": (
            "Float64",
            f"dtype {train.get('dtype')}",
            "n/a (float32 run)"
            if train.get("dtype") != "float64"
            else "no where a framework computes in float32 (its default says so)",
        ),
    }


def differences(config: dict[str, Any], frameworks: list[str]) -> list[Difference]:
    """The difference table of a run configuration (``config.json``) for ``frameworks``
    (the run's, in report order): one row per topic of ``TOPICS``, plus dropout if used."""
    run_level = _run_level(config)
    rows = []
    for topic in TOPICS:
        title, this_run, neutralised = run_level[topic]
        native = {name: native_default(name, topic) for name in frameworks}
        rows.append(Difference(title, native, this_run, neutralised, topic))
    dense = config.get("model", {}).get("dense", [])
    if any(layer.get("dropout", 0) > 0 for layer in dense):
        rows.append(
            Difference(
                "Dropout masks",
                dict.fromkeys(frameworks, "own RNG"),
                "each framework draws its own masks",
                "no: masks differ, so runs with dropout diverge",
            )
        )
    return rows
