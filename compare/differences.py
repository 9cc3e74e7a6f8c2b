"""Where the frameworks differ by default, what each used in a run, and whether it was
neutralised — the table the report shows (DESIGN.md: surface the differences, do not hide them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NATIVE = {
    "adam_epsilon": {
        "numpy": "none of its own: follows the spec",
        "keras": "1e-7, added to sqrt(v) before bias correction",
        "lightning": "1e-8, added to sqrt(v_hat) (torch.optim.Adam)",
    },
    "init": {
        "numpy": "Glorot-uniform kernels, zero biases (cnn_common.weights)",
        "keras": "Glorot-uniform kernels, zero biases (Keras's own RNG)",
        "lightning": "Kaiming-uniform(a=sqrt 5) weights, uniform(±1/sqrt(fan_in)) biases",
    },
    "layout": {
        "numpy": "NHWC, conv kernel (KH, KW, C, F)",
        "keras": "NHWC, conv kernel (KH, KW, C, F)",
        "lightning": "NCHW, conv weight (F, C, KH, KW)",
    },
    "flatten": {"numpy": "H, W, C", "keras": "H, W, C", "lightning": "C, H, W"},
    "same_padding": {
        "numpy": "explicit pads from the spec",
        "keras": "TensorFlow: the odd pixel at bottom/right",
        "lightning": "padding='same' only for stride 1, split evenly",
    },
    "batch_order": {
        "numpy": "none of its own",
        "keras": "fit(shuffle=True) reshuffles",
        "lightning": "DataLoader(shuffle=True) / DistributedSampler",
    },
    "loss_logging": {
        "numpy": "per step",
        "keras": "running mean over the epoch",
        "lightning": "per step (self.log on_step)",
    },
    "accuracy": {
        "numpy": "micro (correct / total)",
        "keras": "micro (correct / total)",
        "lightning": "torchmetrics MulticlassAccuracy: macro by default",
    },
    "kernels": {
        "numpy": "NumPy + BLAS GEMM (im2col)",
        "keras": "TensorFlow/oneDNN (or cuDNN)",
        "lightning": "PyTorch/oneDNN (or cuDNN)",
    },
}


@dataclass(frozen=True)
class Difference:
    topic: str
    native: dict[str, str]  # framework -> its default
    this_run: str  # what every framework used in this run
    neutralised: str  # yes | no | partly, with why


def differences(config: dict[str, Any]) -> list[Difference]:
    """The difference table for a run configuration (``runner.RunOptions.config()``)."""
    train = config.get("train", {})
    model = config.get("model", {})
    shared = config.get("init") == "shared"
    eps = f"{train.get('epsilon')} ({train.get('epsilon_convention')} convention)"
    has_same = any(block.get("padding") == "same" for block in model.get("conv", []))
    has_dropout = any(d.get("dropout", 0) > 0 for d in model.get("dense", []))
    rows = [
        Difference(
            "Adam epsilon",
            NATIVE["adam_epsilon"],
            f"{train.get('optimizer')}: epsilon {eps}",
            "yes: each framework implements the spec's convention",
        ),
        Difference(
            "Initial weights",
            NATIVE["init"],
            "shared: one Glorot-uniform set from cnn_common, loaded into all three"
            if shared
            else "native: each framework's own initialisers",
            "yes: identical starting weights" if shared else "no (--init native)",
        ),
        Difference(
            "Tensor layout",
            NATIVE["layout"],
            "canonical NHWC weights, converted once",
            "yes: cnn_common.weights converts to and from PyTorch's layout",
        ),
        Difference(
            "Flatten order",
            NATIVE["flatten"],
            "H, W, C (canonical)",
            "yes: the first dense layer's rows are permuted for PyTorch",
        ),
        Difference(
            "'same' padding",
            NATIVE["same_padding"],
            "TensorFlow's placement, explicit pads" if has_same else "not used (valid)",
            "yes: pads computed once in cnn_common.spec" if has_same else "n/a",
        ),
        Difference(
            "Batch order",
            NATIVE["batch_order"],
            "cnn_common.batches.epoch_batches(seed, epoch)",
            "yes: the same index batches in all three",
        ),
        Difference(
            "Loss curve",
            NATIVE["loss_logging"],
            "every step's own loss",
            "yes: the run record keeps per-step losses from every framework",
        ),
        Difference(
            "Accuracy",
            NATIVE["accuracy"],
            "micro (correct / total)",
            "yes: torchmetrics is set to average='micro'",
        ),
        Difference(
            "Float32 kernels",
            NATIVE["kernels"],
            f"{train.get('dtype')}",
            "no: rounding differs by kernel; `cnn-compare parity` measures it",
        ),
    ]
    if has_dropout:
        rows.append(
            Difference(
                "Dropout masks",
                {k: "own RNG" for k in NATIVE["init"]},
                "each framework draws its own masks",
                "no: masks differ, so runs with dropout diverge",
            )
        )
    return rows
