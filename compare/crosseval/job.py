"""The job of the cross-evaluation: other frameworks' trained weights run in one framework."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from compare.engine.jobs import Job


@dataclass(frozen=True, kw_only=True)
class CrossEvalJob(Job):
    """The test-set logits of each weight file (canonical safetensors, by source framework)
    in ``framework``, written to ``out``."""

    kind: ClassVar[str] = "crosseval"
    weights: dict[str, str]  # source framework -> its weights.safetensors
    eval_subset: int | None = None
