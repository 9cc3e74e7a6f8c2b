"""Weight decay and the learning-rate schedule, as the spec states them for every framework.

Weight decay (``TrainSpec.weight_decay`` = ``wd``, at the update's learning rate ``lr_t``):

- ``weight_decay_convention="l2"``: ``g <- g + wd * w`` before the optimiser's rule (PyTorch's
  ``Adam`` and ``SGD`` with ``weight_decay``); the loss reported is the data loss alone;
- ``"decoupled"``: ``w <- w - lr_t * wd * w`` before the optimiser's update (Loshchilov &
  Hutter's AdamW: PyTorch's ``AdamW``, Keras's ``weight_decay`` argument).

``weight_decay_on`` says which weights decay: ``all`` trainable ones (kernels, biases,
batchnorm's gamma and beta: what both frameworks do by default) or ``kernels`` only (the conv
and dense kernels). Batchnorm's running statistics are not trained and never decay.

The learning rate of update ``s`` (0 for the first update of a run) is ``learning_rate(train,
s, steps_per_epoch)``. The schedule counts ``t``: epochs (``lr_interval="epoch"``, ``t = s //
steps_per_epoch``: every step of an epoch has one rate) or steps (``"step"``, ``t = s``), over
``T`` of them in the run (its epochs, or epochs times steps per epoch). With ``lr`` the spec's
``learning_rate`` and ``W = lr_warmup``:

- warm-up, ``t < W``: ``lr * (t + 1) / (W + 1)``, rising linearly, never 0;
- then, with ``u = t - W``: ``constant``: ``lr``; ``step``: ``lr * lr_gamma ** (u //
  lr_step_size)``; ``cosine``: ``lr * (1 + cos(pi * u / (T - W))) / 2``, from ``lr`` towards 0
  (PyTorch's ``CosineAnnealingLR`` with ``T_max = T - W``, Keras's ``CosineDecay``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Protocol

from cnn_common.spec_checks import check_choice, check_float, check_int

WEIGHT_DECAY_CONVENTIONS = ("l2", "decoupled")
WEIGHT_DECAY_ON = ("all", "kernels")
LR_SCHEDULES = ("constant", "step", "cosine")
LR_INTERVALS = ("epoch", "step")
KERNEL_SUFFIX = ".kernel"  # canonical names of conv and dense kernels end so


class TrainSpec(Protocol):
    """The fields of ``cnn_common.spec.TrainSpec`` read here (``spec`` imports this module)."""

    epochs: int
    learning_rate: float
    weight_decay: float
    weight_decay_convention: str
    weight_decay_on: str
    lr_schedule: str
    lr_step_size: int
    lr_gamma: float
    lr_warmup: int
    lr_interval: str


def check_schedule(spec: TrainSpec) -> None:
    """Raise ``SpecError`` naming the field when weight decay or the schedule is out of
    range (``validate_train`` calls it)."""
    check_float("weight_decay", spec.weight_decay, 0.0, math.inf, low_open=False)
    check_choice("weight_decay_convention", spec.weight_decay_convention, WEIGHT_DECAY_CONVENTIONS)
    check_choice("weight_decay_on", spec.weight_decay_on, WEIGHT_DECAY_ON)
    check_choice("lr_schedule", spec.lr_schedule, LR_SCHEDULES)
    check_int("lr_step_size", spec.lr_step_size, 1)
    check_float("lr_gamma", spec.lr_gamma, 0.0, 1.0, low_open=True)
    check_int("lr_warmup", spec.lr_warmup, 0)
    check_choice("lr_interval", spec.lr_interval, LR_INTERVALS)


def learning_rate(train: TrainSpec, step: int, steps_per_epoch: int) -> float:
    """The learning rate of update ``step`` (0-based over the run), ``steps_per_epoch`` updates
    an epoch (the module's docstring has the formulas)."""
    per_epoch = train.lr_interval == "epoch"
    t = step // steps_per_epoch if per_epoch else step
    total = train.epochs * (1 if per_epoch else steps_per_epoch)
    warmup, lr = train.lr_warmup, train.learning_rate
    if t < warmup:
        return lr * (t + 1) / (warmup + 1)
    u = t - warmup
    if train.lr_schedule == "step":
        return lr * train.lr_gamma ** (u // train.lr_step_size)
    if train.lr_schedule == "cosine":
        return lr * (1 + math.cos(math.pi * u / max(total - warmup, 1))) / 2
    return lr


def scheduled(train: TrainSpec) -> bool:
    """Whether the learning rate ever changes during a run."""
    return train.lr_schedule != "constant" or train.lr_warmup > 0


def describe(train: TrainSpec) -> str:
    """Weight decay and the schedule in words, empty when there are neither: ``decoupled
    weight decay 0.05 on kernels; cosine schedule per step after 1 of warm-up``."""
    parts = []
    if train.weight_decay:
        convention, reach = train.weight_decay_convention, train.weight_decay_on
        parts.append(f"{convention} weight decay {train.weight_decay:g} on {reach}")
    if scheduled(train):
        warmup = f" after {train.lr_warmup} of warm-up" if train.lr_warmup else ""
        parts.append(f"{train.lr_schedule} schedule per {train.lr_interval}{warmup}")
    return "; ".join(parts)


def decays(train: TrainSpec, names: Iterable[str]) -> set[str]:
    """The canonical trainable weight names among ``names`` that weight decay reaches (none
    when ``weight_decay`` is 0)."""
    if train.weight_decay == 0:
        return set()
    if train.weight_decay_on == "kernels":
        return {name for name in names if name.endswith(KERNEL_SUFFIX)}
    return set(names)
