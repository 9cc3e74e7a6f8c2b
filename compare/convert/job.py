"""The job of ``cnn-compare convert``: canonical weights written in one framework's own file
and read back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from compare.engine.jobs import Job


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
