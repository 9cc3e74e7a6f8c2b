"""The job of ``cnn-compare bench``: one framework timed in a fresh process."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from compare.engine.jobs import Job


@dataclass(frozen=True, kw_only=True)
class BenchJob(Job):
    """One framework timed in a fresh process (``compare.bench.task``): ``epochs`` timed
    training epochs on ``train_images`` after a warm-up epoch, inference on ``infer_images``
    test images (0: none), ``phase_steps`` steps timed by phase (0: none)."""

    kind: ClassVar[str] = "bench"
    train_images: int = 12800
    epochs: int = 1
    infer_images: int = 10000
    phase_steps: int = 30
    native: list[str] = dataclasses.field(default_factory=list)  # train(native=...)
