"""The job of ``cnn-compare run``: train one framework on one seed into its run folder."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from compare.engine.jobs import Job

INITS = ("shared", "native", "shared-ulp")


@dataclass(frozen=True, kw_only=True)
class TrainJob(Job):
    """Train one framework on one seed and leave its run in ``out``."""

    kind: ClassVar[str] = "train"
    seed: int
    subset: int | None = None  # training images (None: all)
    eval_subset: int | None = None  # validation and test images (None: all)
    # shared: cnn_common's initial weights; native: the framework's own initialisers;
    # shared-ulp: the shared weights with the last bit of one weight flipped (a noise floor).
    init: str = "shared"
    init_from: str | None = None  # a trained run's weight file: its matching layers loaded
    native: list[str] = dataclasses.field(default_factory=list)  # train(native=...)
    device: str = "auto"
    devices: int = 1  # processes or GPUs (DDP) for frameworks that can
    resume: bool = True  # continue from the folder's checkpoints, if any
    feature_maps: bool = True  # keep feature maps and misclassified images for the report
