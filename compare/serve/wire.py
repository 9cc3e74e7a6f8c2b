"""The messages between the server and its framework workers: a JSON header and raw arrays.

One message on a byte stream is an 8-byte length, then that many bytes: a JSON object
``{"header": ..., "arrays": [[name, dtype, shape], ...]}``, a newline, and the arrays' bytes
one after another in that order. Only plain numeric dtypes are accepted, so nothing a message
holds is ever unpickled or evaluated; a stream that ends mid-message raises ``EOFError``.
"""

from __future__ import annotations

import json
import struct
from typing import IO, Any

import numpy as np

LENGTH = struct.Struct("<Q")
DTYPES = frozenset({"float32", "float64", "int64", "int32", "uint8", "bool"})


def encode(header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> bytes:
    """One message: ``header`` (JSON-able) and ``arrays`` by name."""
    arrays = arrays or {}
    table, blobs = [], []
    for name, value in arrays.items():
        value = np.ascontiguousarray(value)
        if value.dtype.name not in DTYPES:
            raise TypeError(f"array {name!r}: dtype {value.dtype} cannot be sent")
        table.append([name, value.dtype.name, list(value.shape)])
        blobs.append(value.tobytes())
    head = json.dumps({"header": header, "arrays": table}).encode() + b"\n"
    body = head + b"".join(blobs)
    return LENGTH.pack(len(body)) + body


def decode(body: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and arrays of one message's body (without its length)."""
    head, _, rest = body.partition(b"\n")
    meta = json.loads(head)
    arrays, offset = {}, 0
    for name, dtype, shape in meta["arrays"]:
        if dtype not in DTYPES:
            raise ValueError(f"array {name!r}: dtype {dtype} is not accepted")
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        chunk = rest[offset : offset + size]
        if len(chunk) != size:
            raise ValueError(f"array {name!r}: {len(chunk)} bytes, {size} expected")
        arrays[name] = np.frombuffer(chunk, dtype=dtype).reshape(shape)
        offset += size
    return meta["header"], arrays


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            raise EOFError("the stream ended in the middle of a message")
        data += chunk
    return bytes(data)


def send(
    stream: IO[bytes], header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None
) -> None:
    """Write one message and flush it."""
    stream.write(encode(header, arrays))
    stream.flush()


def receive(stream: IO[bytes]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read one message: ``(header, arrays)``."""
    (size,) = LENGTH.unpack(_read_exactly(stream, LENGTH.size))
    return decode(_read_exactly(stream, size))
