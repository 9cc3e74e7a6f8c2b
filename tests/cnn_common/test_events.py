"""cnn_common.events: the typed progress events and their JSON form (they cross a process)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from cnn_common.events import EVENT_TYPES, End, Epoch, Event, Start, Step

EVENTS = [
    Start(framework="keras-jax", epochs=5, steps_per_epoch=430, start_epoch=2),
    Step(epoch=3, step=17, steps=430, loss=0.123456789012345, accuracy=0.9375),
    Epoch(
        epoch=3,
        train_loss=0.1,
        train_accuracy=0.97,
        val_loss=0.08,
        val_accuracy=0.98,
        time_s=12.5,
    ),
    End(test_loss=0.05, test_accuracy=0.9912),
]


def test_every_kind_has_a_type() -> None:
    assert {"start": Start, "step": Step, "epoch": Epoch, "end": End} == EVENT_TYPES
    assert {type(event) for event in EVENTS} == set(EVENT_TYPES.values())


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.kind)
def test_each_event_round_trips_through_json(event: Event) -> None:
    text = event.to_json()
    assert "\n" not in text  # one line of events.jsonl
    data = json.loads(text)
    assert data["event"] == event.kind
    assert data == {"event": event.kind, **dataclasses.asdict(event)}
    back = Event.from_json(text)
    assert type(back) is type(event) and back == event
    assert Event.from_dict(event.to_dict()) == event


def test_nan_survives_the_round_trip() -> None:
    event = Step(epoch=1, step=1, steps=1, loss=math.nan, accuracy=0.0)
    back = Event.from_json(event.to_json())
    assert isinstance(back, Step) and math.isnan(back.loss)


def test_events_are_frozen_and_unknown_kinds_refused() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        EVENTS[0].epochs = 3  # type: ignore[misc]
    with pytest.raises(KeyError):
        Event.from_json('{"event": "pause"}')
    with pytest.raises(TypeError):
        Event.from_json('{"event": "end", "test_loss": 1.0}')  # a field missing
