"""Bad input and hostile requests: every one answered with a 4xx and a message, the server
keeps serving, its memory stays flat (a real server, over HTTP)."""

from __future__ import annotations

import base64
import http.client
import json
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from compare.serve.process import serving

GOOD = {"index": 0}
ROW = [0.0] * 28
IMAGE = [ROW] * 28


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


# (method, path, body or None, expected status): at least 25 kinds
KINDS: list[tuple[str, str, bytes | None, int]] = [
    ("POST", "/api/predict", b"{not json", 422),
    ("POST", "/api/predict", b"[1, 2, 3]", 422),
    ("POST", "/api/predict", b'"a string"', 422),
    ("POST", "/api/predict", _json({}), 422),
    ("POST", "/api/predict", _json({"index": -1}), 422),
    ("POST", "/api/predict", _json({"index": 10**9}), 404),
    ("POST", "/api/predict", _json({"index": "zero"}), 422),
    ("POST", "/api/predict", _json({"image": [[0.0] * 27] * 28}), 422),
    ("POST", "/api/predict", _json({"image": [ROW] * 27}), 422),
    ("POST", "/api/predict", _json({"image": [["x"] * 28] * 28}), 422),
    (
        "POST",
        "/api/predict",
        b'{"image": [' + b",".join([b"[" + b",".join([b"NaN"] * 28) + b"]"] * 28) + b"]}",
        422,
    ),
    (
        "POST",
        "/api/predict",
        b'{"image": [' + b",".join([b"[" + b",".join([b"Infinity"] * 28) + b"]"] * 28) + b"]}",
        422,
    ),
    ("POST", "/api/predict", _json({"image": [[5.0] * 28] * 28}), 422),
    ("POST", "/api/predict", _json({"image": IMAGE, "index": 0}), 422),
    ("POST", "/api/predict", _json({"index": 0, "frameworks": ["caffe"]}), 422),
    ("POST", "/api/predict", _json({"index": 0, "frameworks": []}), 422),
    ("POST", "/api/predict", _json({"index": 0, "extra": "__import__('os')"}), 422),
    ("POST", "/api/predict", _json({"drawing": {"width": 10, "height": 10, "data": "!!!"}}), 422),
    (
        "POST",
        "/api/predict",
        _json(
            {"drawing": {"width": 10, "height": 10, "data": base64.b64encode(b"x" * 99).decode()}}
        ),
        422,
    ),
    ("POST", "/api/predict", _json({"drawing": {"width": 100000, "height": 1, "data": ""}}), 422),
    ("POST", "/api/predict", b"\x80\x04\x95pickle", 400),
    (
        "POST",
        "/api/explain",
        _json({**GOOD, "layer": "nope", "row": 0, "col": 0, "channel": 0}),
        422,
    ),
    (
        "POST",
        "/api/explain",
        _json({**GOOD, "layer": "conv1", "row": 99, "col": 0, "channel": 0}),
        422,
    ),
    ("POST", "/api/explain", _json({**GOOD, "layer": "conv1", "row": 0, "col": 0}), 422),
    ("GET", "/api/test/999999", None, 404),
    ("GET", "/api/test/abc", None, 422),
    ("GET", "/api/sources/no_such_layer", None, 404),
    ("GET", "/static/../pyproject.toml", None, 404),
    ("GET", "/static/..%2f..%2fpyproject.toml", None, 404),
    ("GET", "/static/%2e%2e/%2e%2e/etc/passwd", None, 404),
    ("GET", "/static//etc/passwd", None, 404),
    ("GET", "/static/explorer.js%00.png", None, 404),
    ("GET", "/../../etc/passwd", None, 404),
    ("GET", "/api/nothing", None, 404),
    ("DELETE", "/api/predict", None, 405),
    ("POST", "/api/predict", b"x" * (2 << 20), 413),
]


def _send(
    conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None
) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


def test_a_thousand_hostile_requests_are_answered_and_the_server_carries_on(
    served: Path, data_dir: Path
) -> None:
    assert len(KINDS) >= 25
    with serving(served, data_dir) as (address, proc):
        host = urlsplit(address)
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
        status, _ = _send(conn, "POST", "/api/predict", _json(GOOD))  # the workers start
        assert status == 200
        process = psutil.Process(proc.pid)
        rounds = -(-1000 // len(KINDS))
        before = None
        for round_ in range(rounds):
            for method, path, body, expected in KINDS:
                status, text = _send(conn, method, path, body)
                assert status == expected, (method, path, status, text[:300])
                assert json.loads(text)["error"], text[:300]
                if status == 413:  # the server closes a connection it refused a body on
                    conn.close()
                    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
            if round_ == 2:
                before = process.memory_info().rss  # after the first rounds warmed it
        after = process.memory_info().rss
        assert before is not None and after - before < 20 * 2**20, (before, after)
        status, text = _send(conn, "POST", "/api/predict", _json(GOOD))
        assert status == 200 and json.loads(text)["results"]
        assert proc.poll() is None
