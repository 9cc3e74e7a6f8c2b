"""Progress events of a training run: typed, and JSON-safe so they can cross a process.

Every trainer sends, through ``cnn_common.recorder.RunRecorder``, the same events in the same
order::

    Start, (Step x steps_per_epoch, Epoch) x epochs, End

``End`` is sent only once the run record (``run.json``) and the weights are on disk, so a
listener that sees it can read them. Epochs and steps are 1-based here (epoch 1 is the first),
as every framework prints them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    """Base of the events; ``kind`` names the event in its JSON form."""

    kind: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=True)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Event:
        data = dict(data)
        cls = EVENT_TYPES[data.pop("event")]
        return cls(**data)

    @staticmethod
    def from_json(text: str) -> Event:
        return Event.from_dict(json.loads(text))


@dataclass(frozen=True)
class Start(Event):
    kind: ClassVar[str] = "start"
    framework: str
    epochs: int
    steps_per_epoch: int
    start_epoch: int  # epochs already done (resumed runs start later)


@dataclass(frozen=True)
class Step(Event):
    kind: ClassVar[str] = "step"
    epoch: int
    step: int
    steps: int
    loss: float  # running mean of the epoch's step losses
    accuracy: float  # correct / seen so far in the epoch


@dataclass(frozen=True)
class Epoch(Event):
    kind: ClassVar[str] = "epoch"
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    time_s: float


@dataclass(frozen=True)
class End(Event):
    kind: ClassVar[str] = "end"
    test_loss: float
    test_accuracy: float


EVENT_TYPES: dict[str, type[Event]] = {cls.kind: cls for cls in (Start, Step, Epoch, End)}

EventCallback = Callable[[Event], None]
