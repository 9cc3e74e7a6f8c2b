"""The jobs a worker process runs, as typed messages: the parent writes one to ``job.json``,
the worker reads it back (``to_json`` / ``from_json``), so nothing travels as loose strings.

``Job`` is what every job carries; each feature defines its own kinds (``compare.run.job``'s
``TrainJob``, ``compare.parity.job``'s ``ParityJob``, ...) and registers them with their
handler (``compare.engine.features``). ``BatchJob`` is the engine's own: several jobs of one
framework, one after the other in one process (the framework is imported once for all).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
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

    @classmethod
    def from_fields(cls, fields: dict[str, Any], types: Mapping[str, type[Job]]) -> Job:
        """A job of this kind from its ``to_dict`` fields (without ``kind``)."""
        return cls(**fields)

    @staticmethod
    def from_dict(data: dict[str, Any], types: Mapping[str, type[Job]]) -> Job:
        """A job of any kind in ``types`` (kind -> job type) from what ``to_dict`` wrote."""
        data = dict(data)
        return types[data.pop("kind")].from_fields(data, types)

    @staticmethod
    def from_json(text: str, types: Mapping[str, type[Job]]) -> Job:
        return Job.from_dict(json.loads(text), types)


@dataclass(frozen=True, kw_only=True)
class BatchJob(Job):
    """Jobs of one framework in one process; ``out`` holds the batch's events and log, each
    job writes into its own ``out``. A failed job is recorded in its folder and the batch goes
    on with the next."""

    kind: ClassVar[str] = "batch"
    jobs: list[Job]

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "jobs": [job.to_dict() for job in self.jobs]}

    @classmethod
    def from_fields(cls, fields: dict[str, Any], types: Mapping[str, type[Job]]) -> Job:
        jobs = [Job.from_dict(job, types) for job in fields["jobs"]]
        return cls(**{**fields, "jobs": jobs})
