"""The jobs a worker process runs, as typed messages: the parent writes one to ``job.json``,
the worker reads it back (``to_json`` / ``from_json``), so nothing travels as loose strings.

- ``TrainJob``: train one framework on one seed and leave its run in ``out``;
- ``ParityJob``: record one framework's logits, gradients and updates from shared weights;
- ``BenchJob``: time one framework's training epochs and inference.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from cnn_common.spec import ModelSpec, TrainSpec, spec_from_dict, spec_to_dict


@dataclass(frozen=True, kw_only=True)
class Job:
    """What every job carries: the framework, its folder, the specs (as plain data) and the
    data to load."""

    kind: ClassVar[str] = ""
    framework: str
    out: str
    model_spec: dict[str, Any]
    train_spec: dict[str, Any]
    dataset: str = "mnist"
    data_dir: str | None = None

    @classmethod
    def create(cls, *, model_spec: ModelSpec, train_spec: TrainSpec, out: Path, **fields: Any):
        """A job of this kind from spec objects (stored as plain data)."""
        specs = spec_to_dict(model_spec, train_spec)
        return cls(out=str(out), model_spec=specs["model"], train_spec=specs["train"], **fields)

    @property
    def path(self) -> Path:
        return Path(self.out)

    def specs(self) -> tuple[ModelSpec, TrainSpec]:
        return spec_from_dict({"model": self.model_spec, "train": self.train_spec})

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, **dataclasses.asdict(self)}, indent=1)

    @staticmethod
    def from_json(text: str) -> Job:
        data = json.loads(text)
        return JOB_TYPES[data.pop("kind")](**data)


@dataclass(frozen=True, kw_only=True)
class TrainJob(Job):
    kind: ClassVar[str] = "train"
    seed: int
    subset: int | None = None  # training images (None: all)
    eval_subset: int | None = None  # validation and test images (None: all)
    init: str = "shared"  # shared | native
    device: str = "auto"
    resume: bool = True  # continue from the folder's checkpoints, if any


@dataclass(frozen=True, kw_only=True)
class ParityJob(Job):
    kind: ClassVar[str] = "parity"
    steps: int = 3


@dataclass(frozen=True, kw_only=True)
class BenchJob(Job):
    kind: ClassVar[str] = "bench"
    train_images: int = 12800
    repeats: int = 3


JOB_TYPES: dict[str, type[Job]] = {cls.kind: cls for cls in (TrainJob, ParityJob, BenchJob)}
