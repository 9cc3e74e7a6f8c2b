"""The job of ``cnn-compare parity``: one framework's logits, gradients and updates from the
shared weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from compare.engine.jobs import Job


@dataclass(frozen=True, kw_only=True)
class ParityJob(Job):
    """Record ``steps`` optimiser steps of one framework (``compare.parity.task``)."""

    kind: ClassVar[str] = "parity"
    steps: int = 3
