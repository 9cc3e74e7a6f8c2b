"""The two GPU conventions that part frameworks most: TensorFloat-32 and deterministic kernels.

On an NVIDIA GPU since Ampere, a float32 convolution or matrix multiply may round its inputs
to TensorFloat-32 (10 mantissa bits instead of 23) and run on tensor cores; and many kernels
reduce with atomics, or are chosen by timing, so two runs of one program differ in the last
bits. Each library decides both by itself, and each decides differently:

- PyTorch: TF32 in cuDNN convolutions, not in matrix multiplies; nondeterministic kernels
  allowed (``torch.use_deterministic_algorithms(False)``).
- TensorFlow: TF32 in both; op determinism off.
- JAX: its default precision, TF32 in both on such a GPU; XLA's nondeterministic kernels
  allowed (``--xla_gpu_deterministic_ops`` is false).

The spec states both (``TrainSpec.tf32``: off | conv | all; ``TrainSpec.deterministic``), and
each framework's training sets them here, once it knows its run is on a GPU: the library's
own switches, one function per library. A CPU computes float32 in float32 and its kernels are
deterministic, so on a CPU these topics change nothing (``gpu_here``). ``GPU_CONVENTIONS``
holds each library's own choice, which each framework's declaration takes from the library it
computes with.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cnn_common.conventions import Convention
from cnn_common.errors import UserError
from cnn_common.train_spec import TrainSpec

TORCH_TF32_DOCS = "https://pytorch.org/docs/stable/notes/cuda.html#tensorfloat-32-tf32-on-ampere-and-later-devices"
TORCH_DETERMINISM_DOCS = "https://pytorch.org/docs/stable/notes/randomness.html"
TF_DOCS = "https://www.tensorflow.org/api_docs/python/tf/config/experimental"
JAX_PRECISION_DOCS = "https://docs.jax.dev/en/latest/_autosummary/jax.default_matmul_precision.html"
NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")  # one folder per GPU the driver sees
XLA_FLAG = "xla_gpu_deterministic_ops"  # read from XLA_FLAGS when XLA starts its GPU backend

# Each library's own choice (cnn_common.conventions.GPU_TOPICS), by library.
GPU_CONVENTIONS: dict[str, dict[str, Convention]] = {
    "torch": {
        "tf32": Convention(
            {"tf32": "conv"},
            "torch.backends.cudnn.conv.fp32_precision = 'tf32', "
            "torch.backends.cuda.matmul.fp32_precision = 'ieee': convolutions in TF32, "
            "matrix multiplies in float32",
            TORCH_TF32_DOCS,
        ),
        "deterministic": Convention(
            {"deterministic": False},
            "torch.use_deterministic_algorithms(False): atomics-based kernels allowed",
            TORCH_DETERMINISM_DOCS,
        ),
    },
    "tensorflow": {
        "tf32": Convention(
            {"tf32": "all"},
            "tf.config.experimental.enable_tensor_float_32_execution(True): convolutions and "
            "matrix multiplies in TF32",
            f"{TF_DOCS}/enable_tensor_float_32_execution",
        ),
        "deterministic": Convention(
            {"deterministic": False},
            "op determinism off until tf.config.experimental.enable_op_determinism()",
            f"{TF_DOCS}/enable_op_determinism",
        ),
    },
    "jax": {
        "tf32": Convention(
            {"tf32": "all"},
            "jax_default_matmul_precision unset: Precision.DEFAULT, TF32 for float32 "
            "convolutions and matrix multiplies on an Ampere or later GPU",
            JAX_PRECISION_DOCS,
        ),
        "deterministic": Convention(
            {"deterministic": False},
            f"XLA_FLAGS without --{XLA_FLAG}=true: XLA's atomics-based kernels allowed",
            "https://docs.jax.dev/en/latest/gpu_performance_tips.html",
        ),
    },
}


def gpu_here(device: str = "auto") -> bool:
    """Whether a run on ``device`` (auto | cpu | gpu) can reach an NVIDIA GPU: the driver lists
    one and ``CUDA_VISIBLE_DEVICES`` does not hide it. Read without importing a framework."""
    if device == "cpu" or os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return False
    return NVIDIA_GPUS.is_dir() and any(NVIDIA_GPUS.iterdir())


def _one_switch(library: str, train: TrainSpec) -> None:
    """TensorFlow and JAX switch TF32 for convolutions and matrix multiplies together."""
    if train.tf32 == "conv":
        raise UserError(
            f"{library} cannot use TensorFloat-32 in convolutions only (tf32: conv): one switch "
            "covers convolutions and matrix multiplies",
            "set tf32 to off or all for this framework",
        )


def set_torch(train: TrainSpec) -> None:
    """Set PyTorch's TF32 and determinism switches to ``train``'s.

    Call it before the first CUDA operation: cuBLAS reads ``CUBLAS_WORKSPACE_CONFIG`` once,
    when it starts, and needs that fixed workspace to be deterministic; it is set whatever this
    run asks, so that a later run of the process may ask. ``warn_only``: an operation with no
    deterministic CUDA kernel warns instead of failing the run (the GPU checks compare two
    runs' bits, which says whether it mattered).
    """
    import torch

    conv = "tf32" if train.tf32 in ("conv", "all") else "ieee"
    matmul = "tf32" if train.tf32 == "all" else "ieee"
    torch.backends.cudnn.conv.fp32_precision = conv
    torch.backends.cuda.matmul.fp32_precision = matmul
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(train.deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = False  # timing-based algorithm choice: off, as by default


def set_tensorflow(train: TrainSpec) -> None:
    """Set TensorFlow's TF32 and op-determinism switches to ``train``'s."""
    _one_switch("TensorFlow", train)
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    tf.config.experimental.enable_tensor_float_32_execution(train.tf32 == "all")
    if train.deterministic:
        tf.config.experimental.enable_op_determinism()
    elif tf_config.is_op_determinism_enabled():
        # The public API has no way back; a later run of the same process may want it off.
        tf_config.disable_op_determinism()


def xla_deterministic(flags: str | None = None) -> bool:
    """Whether ``flags`` (default: ``XLA_FLAGS``) turn on XLA's deterministic GPU kernels."""
    text = os.environ.get("XLA_FLAGS", "") if flags is None else flags
    found = re.findall(rf"--{XLA_FLAG}(?:=(\S+))?", text)
    return bool(found) and found[-1].lower() in ("", "true", "1")


def start_xla_deterministic() -> None:
    """Before JAX starts: XLA's deterministic kernels on, the spec's default, unless
    ``XLA_FLAGS`` already names the flag (a process for ``deterministic: false`` runs)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if f"--{XLA_FLAG}" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --{XLA_FLAG}=true".strip()


def set_jax(train: TrainSpec) -> None:
    """Set JAX's default precision to ``train``'s TF32; check its deterministic kernels.

    XLA reads ``--xla_gpu_deterministic_ops`` once, when its GPU backend starts, so a process
    cannot change it afterwards (``start_xla_deterministic`` sets it before): a run whose spec
    disagrees with the process's flag is refused, with the flag to start it with.
    """
    _one_switch("JAX", train)
    import jax

    precision = "tensorfloat32" if train.tf32 == "all" else "float32"
    jax.config.update("jax_default_matmul_precision", precision)
    if xla_deterministic() != train.deterministic:
        value = "true" if train.deterministic else "false"
        raise UserError(
            f"the spec asks for deterministic: {str(train.deterministic).lower()}, but this "
            f"process's XLA started with --{XLA_FLAG}={str(not train.deterministic).lower()}",
            f"start it with XLA_FLAGS=--{XLA_FLAG}={value} (XLA reads it once, at start)",
        )


# Each library's setter, by the name ``GPU_CONVENTIONS`` and Keras's backends use.
SETTERS = {"torch": set_torch, "tensorflow": set_tensorflow, "jax": set_jax}
