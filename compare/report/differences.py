"""Where the frameworks of a run differ by default, what the run used, and whether it
neutralised the difference: the report's differences table (docs/design.md: surface the
differences, do not hide them).

Each framework declares its own defaults (``FrameworkInfo.native``, one sentence per topic of
``cnn_common.framework.TOPICS``); this module adds only what the run itself decided.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cnn_common.conventions import GPU_TOPICS
from cnn_common.errors import SpecError
from cnn_common.framework import TOPICS
from cnn_common.graph import LayerSpec
from cnn_common.schedule import describe
from cnn_common.spec import TrainSpec
from compare.engine import registry

NOT_INSTALLED = "unknown: the framework is not installed here"
DEFAULT_LAYER = vars(LayerSpec(kind="batchnorm"))  # a field a spec file left out: its default


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


def native_formula(framework: str, topic: str) -> str:
    """``framework``'s own rule on a convention topic as it writes it, with its source."""
    info = registry.frameworks().get(framework)
    if info is None:
        return NOT_INSTALLED
    convention = info.conventions.get(topic)
    if convention is None:
        return "none of its own: follows the spec"
    # the page named, not linked: the report is self-contained and loads nothing
    return f"{convention.formula} (docs: {convention.source.removeprefix('https://')})"


# The convention topics' rows (cnn_common.conventions), after the TOPICS rows.
CONVENTION_ROWS = {
    "bn_momentum": "BatchNorm running average",
    "bn_epsilon": "BatchNorm epsilon",
    "bn_variance": "BatchNorm running variance",
    "frozen_bn": "Frozen BatchNorm",
    "weight_decay": "Weight decay",
    "schedule": "Schedule stepping",
    "tf32": "TensorFloat-32 (GPU)",
    "deterministic": "Deterministic kernels (GPU)",
}


def _batchnorm_values(model: dict[str, Any], fields: tuple[str, ...]) -> list[str]:
    """The distinct values of ``fields`` over the spec's batchnorm-bearing layers, in words."""
    found = []
    for item in model.get("layers", []):
        if item.get("kind") not in ("batchnorm", "residual"):
            continue
        if fields == ("frozen_batchnorm",) and item.get("trainable", True):
            continue
        words = ", ".join(f"{field} {item.get(field, DEFAULT_LAYER[field])}" for field in fields)
        if words not in found:
            found.append(words)
    return found


def _convention_rows(config: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """topic -> (this run, neutralised) for each convention topic."""
    model, train = config.get("model", {}), config.get("train", {})
    native = set(config.get("native", []))
    fields = {
        "bn_momentum": ("momentum", "momentum_convention"),
        "bn_epsilon": ("epsilon",),
        "bn_variance": ("variance",),
        "frozen_bn": ("frozen_batchnorm",),
    }
    rows = {}
    for topic in CONVENTION_ROWS:
        if topic in fields:
            values = _batchnorm_values(model, fields[topic])
            used = "; ".join(values) or (
                "no frozen batchnorm" if topic == "frozen_bn" else "no batchnorm"
            )
        elif topic == "weight_decay":
            used = (
                f"{train.get('weight_decay')} ({train.get('weight_decay_convention')}, on "
                f"{train.get('weight_decay_on')})"
                if train.get("weight_decay")
                else "none"
            )
            values = [used] if train.get("weight_decay") else []
        elif topic in GPU_TOPICS:
            value = train.get(topic, getattr(TrainSpec(), topic))  # an older record
            used = f"{topic} {str(value).lower()}"
            values = [used]
        else:
            constant = train.get("lr_schedule", "constant") == "constant"
            values = [] if constant and not train.get("lr_warmup") else ["scheduled"]
            used = (
                f"{train.get('lr_schedule')}, per {train.get('lr_interval')}"
                if values
                else "constant learning rate"
            )
        if not values:
            rows[topic] = (used, "n/a")
        elif topic in native:
            rows[topic] = (f"each framework's own (--native); the spec: {used}", "no (--native)")
        elif topic in GPU_TOPICS:
            rows[topic] = (used, "yes on a GPU: every framework sets the spec's; n/a on a CPU")
        else:
            rows[topic] = (used, "yes: every framework implements the spec's")
    return rows


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
    shared = config.get("init") == "shared" and "init" not in config.get("native", [])
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
    native = set(config.get("native", []))
    has_same = any(
        item.get("padding") == "same" for item in (*model.get("conv", []), *model.get("layers", []))
    )
    return {
        "adam_epsilon": (
            "Adam epsilon",
            f"{train.get('optimizer')}: epsilon {eps}" + _decay_and_schedule(train),
            "no (--native)"
            if "epsilon" in native
            else "yes: each framework implements the spec's convention",
        ),
        "init": (
            "Initial weights",
            start,
            "yes: identical starting weights" if shared else "no (native initialisers)",
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
            (
                "no (--native)"
                if "padding" in native
                else "yes: pads computed once in cnn_common.spec"
            )
            if has_same
            else "n/a",  # fmt: skip
        ),
        "batch_order": (
            "Batch order",
            "cnn_common.batches.epoch_batches(seed, epoch)",
            "no (--native)"
            if "order" in native
            else "yes: the same index batches in every framework",
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
    for topic, (this_run, neutralised) in _convention_rows(config).items():
        native = {name: native_formula(name, topic) for name in frameworks}
        rows.append(Difference(CONVENTION_ROWS[topic], native, this_run, neutralised, topic))
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
