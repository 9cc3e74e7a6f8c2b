"""The run record every trainer writes and ``compare`` reads.

A trainer's ``out_dir`` holds:

- ``run.json`` (``RESULT_FILE``): the ``RunResult`` below;
- ``weights.safetensors`` (``WEIGHTS_FILE``): the final weights in the canonical layout;
- ``checkpoints/`` (``cnn_common.files.CHECKPOINT_DIR``): the framework's own per-epoch
  checkpoints, for resume.

Epochs are 0-based in the batch order and 1-based in ``history`` and events (epoch 1 is the
first), as every framework prints them. The progress events are in ``cnn_common.events``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import resource
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from cnn_common.errors import UserError
from cnn_common.files import atomic_write_bytes
from cnn_common.metrics import accuracy, classification_report, confusion_matrix
from cnn_common.spec import ModelSpec, TrainSpec, param_count, spec_to_dict

RESULT_FILE = "run.json"
WEIGHTS_FILE = "weights.safetensors"
SCHEMA_VERSION = 1


class RecordError(UserError, ValueError):
    """A ``run.json`` that is not a run record."""


@dataclass
class EpochRecord:
    """Metrics of one finished epoch (1-based ``epoch``)."""

    epoch: int
    train_loss: float  # mean of the epoch's per-step losses
    train_accuracy: float  # correct / seen over the epoch, as the model was at each step
    val_loss: float
    val_accuracy: float
    time_s: float  # wall time of the epoch's training steps (validation excluded)


@dataclass
class RunResult:
    """One framework's training run. ``to_json``/``from_json`` round-trip it exactly."""

    framework: str  # numpy | keras | lightning
    backend: str  # what executed the math: numpy, tensorflow, torch, jax
    dataset: str
    model_spec: dict[str, Any]
    train_spec: dict[str, Any]
    # shared (canonical init_weights) | native (framework's own initialisers) | transfer
    # (cnn_common.transfer: a trained run's matching layers in the shared weights)
    init: str
    device: str
    versions: dict[str, str]
    param_count: int
    history: list[EpochRecord] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)  # every training step, in order
    test_loss: float = math.nan
    test_accuracy: float = math.nan
    predictions: list[int] = field(default_factory=list)  # test-set class predictions
    confusion_matrix: list[list[int]] = field(default_factory=list)
    class_report: dict[str, dict[str, float]] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)
    epoch_times: list[float] = field(default_factory=list)
    samples_per_s: float = 0.0  # training images per second (median epoch)
    peak_memory_mb: float = 0.0  # peak resident set size of the process (peak_memory_scope)
    # run: since this run started (Linux resets the peak at the start); process: since the
    # process started, so it includes earlier runs of the same process (--in-process)
    peak_memory_scope: str = "run"
    wall_time_s: float = 0.0
    sizes: dict[str, int] = field(default_factory=dict)  # images used: train, val, test
    init_digest: str = ""  # cnn_common.weights.weights_digest of the initial weights
    init_from: str = ""  # init transfer: the weight file the loaded layers came from
    native: list[str] = field(default_factory=list)  # defaults handed back: order, padding
    threads: int = 0  # CPU threads the framework computed with
    load: dict[str, Any] = field(default_factory=dict)  # cnn_common.machine.LoadMeter.read
    environment: dict[str, Any] = field(default_factory=dict)  # cnn_common.machine.environment
    status: str = "ok"  # ok | failed
    error: str = ""
    schema: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        data = dict(data)
        data["history"] = [EpochRecord(**h) for h in data.get("history", [])]
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_json(self, path: str | Path) -> None:
        """Write atomically (temporary file, then rename): a killed run never leaves half."""
        text = json.dumps(self.to_dict(), indent=1, allow_nan=True)
        atomic_write_bytes(path, text.encode())

    @classmethod
    def from_json(cls, path: str | Path) -> RunResult:
        """Read a record; a file that is not one (cut short, edited) raises ``RecordError``."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise RecordError(
                f"{path} is not a readable run record ({type(exc).__name__}: {exc})",
                f"delete {path} and train that run again (`cnn-compare run --resume` trains "
                "only what is missing)",
            ) from None


def reset_peak_memory() -> bool:
    """Start ``peak_memory_mb`` from now: Linux resets its high-water mark (VmHWM) to the
    current resident set size when 5 is written to ``/proc/self/clear_refs``. False where that
    is impossible (another OS, an old kernel): the peak then counts from the process's start."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_memory_mb() -> float:
    """Peak resident set size of this process in MiB: since the last ``reset_peak_memory``
    where the kernel reports VmHWM, else since the process started (``ru_maxrss``)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        status = ""
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed versions of ``names`` plus Python's; missing packages are left out."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def finish_result(
    *,
    framework: str,
    backend: str,
    device: str,
    versions: dict[str, str],
    dataset: str,
    class_names: Iterable[str],
    model_spec: ModelSpec,
    train_spec: TrainSpec,
    init: str,
    history: list[EpochRecord],
    step_losses: list[float],
    test_loss: float,
    y_test: np.ndarray,
    y_pred: np.ndarray,
    n_train: int,
    wall_time_s: float,
    n_val: int = 0,
    init_digest: str = "",
    init_from: str = "",
    native: Iterable[str] = (),
    extra: dict[str, Any] | None = None,
) -> RunResult:
    """Assemble a ``RunResult``: confusion matrix, report and throughput computed here, once."""
    names = list(class_names)
    cm = confusion_matrix(y_test, y_pred, len(names))
    times = [h.time_s for h in history]
    median_time = float(np.median(times)) if times else 0.0
    return RunResult(
        framework=framework,
        backend=backend,
        dataset=dataset,
        model_spec=spec_to_dict(model_spec)["model"],
        train_spec=dataclasses.asdict(train_spec),
        init=init,
        device=device,
        versions=versions,
        param_count=param_count(model_spec),
        history=history,
        step_losses=[float(v) for v in step_losses],
        test_loss=float(test_loss),
        test_accuracy=accuracy(y_test, y_pred),
        predictions=[int(p) for p in y_pred],
        confusion_matrix=cm.tolist(),
        class_report=classification_report(cm, names),
        class_names=names,
        epoch_times=times,
        samples_per_s=n_train / median_time if median_time else 0.0,
        sizes={"train": n_train, "val": n_val, "test": len(y_test)},
        init_digest=init_digest,
        init_from=init_from,
        native=sorted(native),
        peak_memory_mb=peak_memory_mb(),
        wall_time_s=wall_time_s,
        extra=extra or {},
    )


def check_finite_loss(loss: float, epoch: int, step: int) -> None:
    """Raise ``NonFiniteLossError`` when a training loss is NaN or infinite."""
    if not math.isfinite(loss):
        from cnn_common.errors import NonFiniteLossError

        raise NonFiniteLossError(
            f"the training loss became {loss} at epoch {epoch}, step {step}",
            "lower the learning rate (learning_rate=...) or check the input scaling; "
            "checkpoints of the finished epochs are kept",
        )
