"""cnn_common.phases: the step clock books each interval to its phase, once."""

from __future__ import annotations

import types

import numpy as np
import pytest

from cnn_common import phases
from cnn_common.batches import epoch_batches
from cnn_common.phases import PHASES, Phases, StepClock, step_batches
from cnn_common.spec import TrainSpec


class Clock:
    """Stands for ``time.perf_counter``: returns ``now``, which the test moves (a real sleep
    would measure the machine's load as well)."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def test_the_clock_books_each_interval_to_the_phase_it_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wall = Clock()
    monkeypatch.setattr(phases, "time", types.SimpleNamespace(perf_counter=wall.perf_counter))
    clock = StepClock()
    for _ in range(3):
        wall.now = 0.0
        clock.start()
        wall.now += 0.002
        clock.mark("data")
        clock.add("forward", 0.5)  # measured elsewhere (other threads)...
        clock.add("backward", 0.25)
        wall.now += 0.003  # ...so this interval goes nowhere
        clock.skip()
        clock.mark("optimizer")
        clock.end_step()
    times = clock.phases.times
    assert {phase: len(values) for phase, values in times.items()} == {
        "data": 3, "forward": 3, "backward": 3, "optimizer": 3,
    }  # fmt: skip
    assert all(0.002 <= t < 0.1 for t in times["data"])
    assert times["forward"] == [0.5] * 3 and times["backward"] == [0.25] * 3
    assert all(t < 0.002 for t in times["optimizer"])  # the skipped sleep is not in it
    medians = clock.phases.medians()
    assert list(medians) == ["data", "forward", "backward", "optimizer"]  # PHASES order
    assert medians["forward"] == 0.5


def test_an_unknown_phase_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown phase 'loss'"):
        StepClock().add("loss", 1.0)
    assert "fused" in PHASES


def test_medians_skip_phases_without_times() -> None:
    assert Phases({"fused": [3.0, 1.0, 2.0], "data": [1.0]}).medians() == {
        "data": 1.0,
        "fused": 2.0,
    }


def test_step_batches_run_into_the_next_epochs() -> None:
    spec = TrainSpec(batch_size=4)
    found = step_batches(10, spec, 7)  # 3 batches an epoch: 3 + 3 + 1
    assert [(epoch, step) for epoch, step, _ in found] == [
        (0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0),
    ]  # fmt: skip
    for epoch, step, idx in found:
        np.testing.assert_array_equal(idx, epoch_batches(10, 4, spec.seed, epoch)[step])
