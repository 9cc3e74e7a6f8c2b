"""Where a training step's time goes: data, forward, backward, optimiser.

Each framework package may export ``phase_times(model_spec, train_spec, data, init_weights,
steps)``: it trains ``steps`` steps of the shared batch order from ``init_weights`` on the
CPU and returns a ``Phases``, the seconds every step spent in each phase it can tell apart.
``cnn-compare bench`` runs it after the timed epochs and reports the medians.

A framework whose step cannot be cut there says so in ``Phases.note`` and reports the phases it
has: Keras compiles forward, backward and the update into one function (``fused``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from cnn_common.batches import epoch_batches
from cnn_common.spec import TrainSpec

# In the order a step runs them; ``fused`` is a compiled step that holds the last three.
PHASES = ("data", "forward", "backward", "optimizer", "fused")
LABELS = {
    "data": "data",
    "forward": "forward + loss",
    "backward": "backward",
    "optimizer": "optimiser",
    "fused": "forward + backward + optimiser (one compiled step)",
}


@dataclass
class Phases:
    """Per-step seconds by phase (``{phase: [s, s, ...]}``, one entry per step) and a note on
    what could not be separated, or how the phases were split."""

    times: dict[str, list[float]] = field(default_factory=dict)
    note: str = ""

    def medians(self) -> dict[str, float]:
        """The median seconds per step of each phase, in ``PHASES`` order."""
        return {p: float(np.median(self.times[p])) for p in PHASES if self.times.get(p)}


class StepClock:
    """Marks phase boundaries inside a training loop::

        clock = StepClock()
        for batch in batches:
            clock.start()          # the step begins: fetching its data
            xb, yb = ...
            clock.mark("data")     # the time since the last mark goes to "data"
            ...
            clock.mark("optimizer")
            clock.end_step()

    ``add(phase, seconds)`` books time measured elsewhere (other threads) into this step, and
    ``skip()`` then starts the next interval without booking the one that ends.
    """

    def __init__(self) -> None:
        self.phases = Phases()
        self._step: dict[str, float] = {}
        self._last = 0.0

    def start(self) -> None:
        self._step = {}
        self._last = time.perf_counter()

    def mark(self, phase: str) -> None:
        now = time.perf_counter()
        self.add(phase, now - self._last)
        self._last = now

    def skip(self) -> None:
        """Book the time since the last mark nowhere (it was booked with ``add``)."""
        self._last = time.perf_counter()

    def add(self, phase: str, seconds: float) -> None:
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; choose from {PHASES}")
        self._step[phase] = self._step.get(phase, 0.0) + seconds

    def end_step(self) -> None:
        for phase, seconds in self._step.items():
            self.phases.times.setdefault(phase, []).append(seconds)
        self._step = {}


def step_batches(n: int, train_spec: TrainSpec, steps: int) -> list[tuple[int, int, np.ndarray]]:
    """The first ``steps`` batches of the shared order over ``n`` images, as ``(epoch, step,
    indices)``, running into the next epochs when one has fewer."""
    found: list[tuple[int, int, np.ndarray]] = []
    epoch = 0
    while len(found) < steps:
        batches = epoch_batches(n, train_spec.batch_size, train_spec.seed, epoch)
        found += [(epoch, step, idx) for step, idx in enumerate(batches)][: steps - len(found)]
        epoch += 1
    return found
