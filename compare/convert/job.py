"""The job of ``cnn-compare convert``: canonical weights written in one framework's own file
and read back, and (in the keras worker) the LiteRT files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from compare.engine.jobs import Job


@dataclass(frozen=True, kw_only=True)
class ConvertJob(Job):
    """Canonical weights into ``framework``: the test-set logits of the first ``images`` test
    images as set (``source``: the source's own logits) and after ``save`` to ``model_file``
    and ``load`` back (when ``model_file`` is given), written to ``out``.

    ``deploy_repeats`` set: the source's logits cover the whole test set, and the file read
    back is predicted on it and timed (``compare.convert.deploy.timed``, that many
    single-image calls). ``litert_file`` / ``litert_int8_file`` set (the keras worker): the
    model is exported to LiteRT, float32 and int8, the int8 one calibrated on
    ``calibration`` training images drawn with ``calibration_seed``."""

    kind: ClassVar[str] = "convert"
    weights: str  # the canonical .safetensors file
    model_file: str | None = None  # the framework's own file to write and read back
    source: bool = False
    images: int = 1000
    deploy_repeats: int | None = None
    litert_file: str | None = None
    litert_int8_file: str | None = None
    calibration: int = 0
    calibration_seed: int = 0
