"""The learning-rate schedule and the reach of weight decay (``cnn_common.schedule``), by
hand-computed values; the frameworks' own schedulers are checked against the same function
in their tests, and every framework's training against the float64 reference in
``tests/contract/test_schedule.py``."""

from __future__ import annotations

import math

import pytest

from cnn_common.schedule import decays, describe, learning_rate, scheduled
from cnn_common.spec import TrainSpec


def rates(train: TrainSpec, steps_per_epoch: int) -> list[float]:
    return [learning_rate(train, s, steps_per_epoch) for s in range(train.epochs * steps_per_epoch)]


def test_a_constant_rate_without_warm_up_never_changes() -> None:
    train = TrainSpec(learning_rate=0.01, epochs=2)
    assert rates(train, 3) == [0.01] * 6 and not scheduled(train)


def test_step_decay_per_epoch_holds_each_epoch_at_one_rate() -> None:
    train = TrainSpec(learning_rate=1.0, epochs=5, lr_schedule="step", lr_step_size=2, lr_gamma=0.5)
    assert rates(train, 2) == [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25]


def test_warm_up_rises_linearly_then_the_decay_starts_from_the_full_rate() -> None:
    train = TrainSpec(
        learning_rate=0.3,
        epochs=1,
        lr_schedule="step",
        lr_gamma=0.1,
        lr_warmup=2,
        lr_interval="step",
    )
    assert rates(train, 4) == pytest.approx([0.1, 0.2, 0.3, 0.03])


def test_cosine_falls_from_the_rate_towards_zero_over_the_rest_of_the_run() -> None:
    train = TrainSpec(learning_rate=2.0, epochs=5, lr_schedule="cosine", lr_warmup=1)
    expected = [1.0] + [1 + math.cos(math.pi * u / 4) for u in range(4)]  # lr (1 + cos) / 2
    assert rates(train, 1) == pytest.approx(expected)
    per_step = TrainSpec(learning_rate=1.0, epochs=2, lr_schedule="cosine", lr_interval="step")
    assert rates(per_step, 2) == pytest.approx(
        [1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2]
    )


def test_weight_decay_reaches_every_weight_or_the_kernels_only() -> None:
    names = ["c1.kernel", "c1.bias", "bn1.gamma", "bn1.beta", "logits.kernel"]
    assert decays(TrainSpec(), names) == set()
    assert decays(TrainSpec(weight_decay=0.1), names) == set(names)
    kernels = decays(TrainSpec(weight_decay=0.1, weight_decay_on="kernels"), names)
    assert kernels == {"c1.kernel", "logits.kernel"}


def test_describe_names_the_decay_and_the_schedule_or_nothing() -> None:
    assert describe(TrainSpec()) == ""
    train = TrainSpec(
        weight_decay=0.05,
        weight_decay_convention="decoupled",
        weight_decay_on="kernels",
        lr_schedule="cosine",
        lr_interval="step",
        lr_warmup=1,
    )
    assert describe(train) == (
        "decoupled weight decay 0.05 on kernels; cosine schedule per step after 1 of warm-up"
    )
    assert describe(TrainSpec(lr_schedule="step")) == "step schedule per epoch"
