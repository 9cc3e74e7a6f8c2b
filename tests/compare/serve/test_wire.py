"""The messages between the server and its workers carry JSON and plain arrays only."""

from __future__ import annotations

import io

import numpy as np
import pytest

from compare.serve import wire


def test_a_message_round_trips_its_header_and_arrays() -> None:
    stream = io.BytesIO()
    arrays = {"images": np.arange(24, dtype=np.float32).reshape(2, 3, 4, 1), "y": np.array([3, 1])}
    wire.send(stream, {"op": "infer", "n": 2}, arrays)
    wire.send(stream, {"op": "ping"})
    stream.seek(0)
    header, got = wire.receive(stream)
    assert header == {"op": "infer", "n": 2}
    assert got.keys() == arrays.keys()
    for name, value in arrays.items():
        assert got[name].dtype == value.dtype and np.array_equal(got[name], value)
    assert wire.receive(stream) == ({"op": "ping"}, {})
    with pytest.raises(EOFError):
        wire.receive(stream)


def test_objects_are_never_sent_or_read() -> None:
    with pytest.raises(TypeError, match="cannot be sent"):
        wire.encode({}, {"x": np.array([object()])})
    body = b'{"header": {}, "arrays": [["x", "object", [1]]]}\n' + b"\0" * 8
    with pytest.raises(ValueError, match="not accepted"):
        wire.decode(body)


def test_a_cut_message_is_refused() -> None:
    message = wire.encode({}, {"x": np.zeros(10, np.float32)})
    with pytest.raises(EOFError):
        wire.receive(io.BytesIO(message[:-3]))
    head = b'{"header": {}, "arrays": [["x", "float32", [10]]]}\n'
    with pytest.raises(ValueError, match="40 expected"):
        wire.decode(head + b"\0" * 12)
