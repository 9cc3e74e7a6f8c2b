"""How much memory a training run needs, estimated from the spec before anything is allocated,
and the refusal of a run that would not fit.

A spec can ask for more than any machine holds (``conv.0.filters=200000`` asks for about a
hundred gigabytes of activations a batch); without a check the kernel's out-of-memory killer
ends the process with no message, after it has filled the machine. The estimate counts, in the
run's dtype:

- the parameters, their gradients and the optimiser's state (Adam: two moments; SGD with
  momentum: one buffer);
- the activations one training step keeps for its backward pass (every layer's output) and as
  many again for their gradients. Frameworks differ here, and their declarations say how
  (``FrameworkInfo.activation_images``, ``FrameworkInfo.keeps_im2col``): autograd keeps the
  whole batch's; NumPy keeps a piece of the batch per thread at a time, with each convolution's
  im2col rows, which outweigh its output;
- the images of the run (training, validation and test), once loaded.

It leaves out what a framework needs whatever the spec (its libraries, TensorFlow's and
oneDNN's own buffers: hundreds of megabytes), so a run's measured peak (``peak_memory_mb`` in
its record) is larger; it is a floor, enough to refuse a spec that cannot fit.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

from cnn_common.errors import UserError
from cnn_common.framework import FrameworkInfo
from cnn_common.machine import thread_setting
from cnn_common.spec import ModelSpec, TrainSpec, layers, param_count, state_count

BYTES = {"float32": 4, "float64": 8}
MEMINFO = Path("/proc/meminfo")
CGROUP = Path("/sys/fs/cgroup")  # cgroup v2: memory.max and memory.current of this container


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a run needs, by what holds them."""

    parameters: int
    gradients: int
    optimizer: int  # the optimiser's state
    activations: int  # what one training step keeps for its backward pass
    activation_gradients: int
    data: int  # the run's images in its dtype (already resident once loaded)

    @property
    def model(self) -> int:
        """Everything but the images: what training allocates once the data is loaded."""
        return self.total - self.data

    @property
    def total(self) -> int:
        return (
            self.parameters
            + self.gradients
            + self.optimizer
            + self.activations
            + self.activation_gradients
            + self.data
        )

    def describe(self) -> str:
        """One line: the total, then each part."""
        parts = (
            ("parameters", self.parameters),
            ("gradients", self.gradients),
            ("optimiser state", self.optimizer),
            ("activations", self.activations),
            ("their gradients", self.activation_gradients),
            ("images", self.data),
        )
        shown = ", ".join(f"{name} {human(size)}" for name, size in parts if size)
        return f"about {human(self.total)} ({shown})"


def human(size: float) -> str:
    """``size`` bytes in the largest binary unit that keeps it at least 1: ``1.5 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def estimate(
    spec: ModelSpec,
    train_spec: TrainSpec,
    images: int = 0,
    *,
    activation_images: int | None = None,
    threads: int = 1,
    keeps_im2col: bool = False,
) -> MemoryEstimate:
    """What one training process of ``spec`` needs.

    ``images``: how many images it loads (training, validation and test); ``activation_images``:
    images whose activations one thread keeps at once (None: the whole batch, as autograd
    does, and as every framework does for a model with batchnorm), ``threads`` such threads at
    once; ``keeps_im2col``: each convolution keeps its im2col rows (``KH * KW * C + 1`` values
    for each output pixel, a grouped one twice) for its backward pass.
    """
    size = BYTES[train_spec.dtype]
    params = param_count(spec) * size
    state = state_count(spec) * size  # batchnorm's running statistics: no gradient, no moments
    moments = {"adam": 2, "sgd": 1 if train_spec.momentum > 0 else 0}[train_spec.optimizer]
    at_once = train_spec.batch_size
    # Batchnorm normalises over the whole batch, so its activations are held all at once.
    unrolled = layers(spec)
    whole_batch = any(layer.kind == "batchnorm" for layer in unrolled)
    if activation_images is not None and not whole_batch:
        at_once = min(train_spec.batch_size, activation_images * threads)
    per_image = 0  # values kept for the backward pass, one image
    for layer in unrolled:
        per_image += math.prod(layer.output_shape)
        if keeps_im2col and layer.kind == "conv":
            # A grouped convolution's rows are cut from all channels, then regrouped (a copy).
            k, c_in = layer.kernel_size, layer.input_shape[2]
            copies = 2 if layer.groups > 1 else 1
            per_image += math.prod(layer.output_shape[:2]) * (copies * k * k * c_in + 1)
    kept = per_image * at_once * size
    h, w, c = spec.input_shape
    return MemoryEstimate(
        parameters=params + state,
        gradients=params,
        optimizer=moments * params,
        activations=kept,
        activation_gradients=kept,
        data=images * h * w * c * size,
    )


def framework_estimate(
    info: FrameworkInfo, spec: ModelSpec, train_spec: TrainSpec, images: int, threads: int
) -> MemoryEstimate:
    """``estimate`` for one process of the framework ``info`` training on ``threads`` threads."""
    return estimate(
        spec,
        train_spec,
        images,
        activation_images=info.activation_images,
        threads=threads,
        keeps_im2col=info.keeps_im2col,
    )


def check_training(
    info: FrameworkInfo, spec: ModelSpec, train_spec: TrainSpec, devices: int = 1
) -> tuple[MemoryEstimate, int | None]:
    """Refuse (``UserError``) a training run of ``info`` whose model side (the images are
    loaded by then, or small) would not fit in the memory available now, on as many processes
    as ``devices``; return its estimate and the memory available (None: unknown)."""
    need = framework_estimate(info, spec, train_spec, 0, thread_setting())
    what = f"{info.name} training"
    free = check_fits(need.total * devices, what, need.describe(), dtype=train_spec.dtype)
    return need, free


def available_memory(meminfo: Path = MEMINFO, cgroup: Path = CGROUP) -> int | None:
    """Bytes this process can still allocate: the kernel's ``MemAvailable``, or less where a
    container's limit (cgroup v2) leaves less; None where neither can be read."""
    found: list[int] = []
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)  # "MemAvailable: 123 kB"
    with contextlib.suppress(OSError, ValueError):
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int((cgroup / "memory.current").read_text()))
    if not found and hasattr(os, "sysconf"):
        with contextlib.suppress(OSError, ValueError):
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    return max(0, min(found)) if found else None


def check_fits(
    need: int,
    what: str,
    described: str,
    available: int | None = None,
    dtype: str = "float32",
) -> int | None:
    """Refuse (``UserError``) when ``need`` bytes exceed the memory available now (read from
    the machine unless given); return what is available (None: unknown, nothing refused).

    ``what`` names the run in the message, ``described`` is its estimate (``describe()``),
    ``dtype`` the run's (float64 halves with ``--dtype float32``).
    """
    free = available_memory() if available is None else available
    if free is not None and need > free:
        halve = ", --dtype float32" if dtype == "float64" else ""
        raise UserError(
            f"{what} needs {described}, more than the {human(free)} of memory available",
            f"use a smaller model (fewer filters or units), a smaller --batch-size{halve}, "
            "or free memory",
        )
    return free
