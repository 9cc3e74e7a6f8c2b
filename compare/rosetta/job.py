"""The job of ``cnn-compare rosetta``: one framework's source for each layer kind."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from compare.engine.jobs import Job


@dataclass(frozen=True, kw_only=True)
class RosettaJob(Job):
    """The source of every object the framework's package lists for each of ``kinds``
    (``<package>.rosetta.SOURCES``), written to ``out``."""

    kind: ClassVar[str] = "rosetta"
    kinds: list[str]
