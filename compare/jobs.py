"""The jobs a worker process runs, as typed messages: the parent writes one to ``job.json``,
the worker reads it back (``to_json`` / ``from_json``), so nothing travels as loose strings.

- ``TrainJob``: train one framework on one seed and leave its run in ``out``;
- ``BatchJob``: several ``TrainJob`` of one framework, one after the other in one process
  (the ablation: the framework is imported once for all its runs);
- ``ParityJob``: record one framework's logits, gradients and updates from shared weights;
- ``BenchJob``: time one framework's training epochs and inference;
- ``CrossEvalJob``: evaluate other frameworks' trained weights in one framework;
- ``ConvertJob``: write canonical weights in one framework's own file and read it back;
- ``RosettaJob``: read one framework's source for each layer kind.
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

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Job:
        data = dict(data)
        cls = JOB_TYPES[data.pop("kind")]
        if cls is BatchJob:
            data["jobs"] = [Job.from_dict(job) for job in data["jobs"]]
        return cls(**data)

    @staticmethod
    def from_json(text: str) -> Job:
        return Job.from_dict(json.loads(text))


INITS = ("shared", "native", "shared-ulp")


@dataclass(frozen=True, kw_only=True)
class TrainJob(Job):
    kind: ClassVar[str] = "train"
    seed: int
    subset: int | None = None  # training images (None: all)
    eval_subset: int | None = None  # validation and test images (None: all)
    # shared: cnn_common's initial weights; native: the framework's own initialisers;
    # shared-ulp: the shared weights with the last bit of one weight flipped (a noise floor).
    init: str = "shared"
    native: list[str] = dataclasses.field(default_factory=list)  # train(native=...)
    device: str = "auto"
    devices: int = 1  # processes or GPUs (DDP) for frameworks that can
    resume: bool = True  # continue from the folder's checkpoints, if any
    feature_maps: bool = True  # keep feature maps and misclassified images for the report


@dataclass(frozen=True, kw_only=True)
class BatchJob(Job):
    """Training runs of one framework in one process; ``out`` holds the batch's events and
    log, each run writes into its own ``out``. A failed run is recorded in its folder and the
    batch goes on with the next."""

    kind: ClassVar[str] = "batch"
    jobs: list[TrainJob]

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "jobs": [job.to_dict() for job in self.jobs]}


@dataclass(frozen=True, kw_only=True)
class ParityJob(Job):
    kind: ClassVar[str] = "parity"
    steps: int = 3


@dataclass(frozen=True, kw_only=True)
class BenchJob(Job):
    """One framework timed in a fresh process (``compare.bench_task``): ``epochs`` timed
    training epochs on ``train_images`` after a warm-up epoch, inference on ``infer_images``
    test images (0: none), ``phase_steps`` steps timed by phase (0: none)."""

    kind: ClassVar[str] = "bench"
    train_images: int = 12800
    epochs: int = 1
    infer_images: int = 10000
    phase_steps: int = 30
    native: list[str] = dataclasses.field(default_factory=list)  # train(native=...)


@dataclass(frozen=True, kw_only=True)
class CrossEvalJob(Job):
    """The test-set logits of each weight file (canonical safetensors, by source framework)
    in ``framework``, written to ``out``."""

    kind: ClassVar[str] = "crosseval"
    weights: dict[str, str]  # source framework -> its weights.safetensors
    eval_subset: int | None = None


@dataclass(frozen=True, kw_only=True)
class ConvertJob(Job):
    """Canonical weights into ``framework``: the test-set logits of the first ``images`` test
    images as set (``source``: the source's own logits) and after ``save`` to ``model_file``
    and ``load`` back (when ``model_file`` is given), written to ``out``."""

    kind: ClassVar[str] = "convert"
    weights: str  # the canonical .safetensors file
    model_file: str | None = None  # the framework's own file to write and read back
    source: bool = False
    images: int = 1000


@dataclass(frozen=True, kw_only=True)
class RosettaJob(Job):
    """The source of every object the framework's package lists for each of ``kinds``
    (``<package>.rosetta.SOURCES``), written to ``out``."""

    kind: ClassVar[str] = "rosetta"
    kinds: list[str]


JOB_TYPES: dict[str, type[Job]] = {
    cls.kind: cls
    for cls in (TrainJob, BatchJob, ParityJob, BenchJob, CrossEvalJob, ConvertJob, RosettaJob)
}
