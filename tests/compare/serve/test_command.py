"""``cnn-compare serve`` from the command line: the address, the token, bad input."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from compare.serve.command import access_token, is_local
from compare.serve.process import serving


def serve(*args: str, data_dir: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **({"CNN_DATA_DIR": str(data_dir)} if data_dir else {})}
    return subprocess.run(
        [sys.executable, "-m", "compare", "serve", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_local_binds_need_no_token_and_others_always_get_one() -> None:
    assert is_local("127.0.0.1") and is_local("localhost") and is_local("::1")
    assert not is_local("0.0.0.0") and not is_local("192.168.1.5")
    assert access_token("127.0.0.1", None) is None
    drawn = access_token("0.0.0.0", None)
    assert drawn and len(drawn) >= 24 and drawn != access_token("0.0.0.0", None)
    assert access_token("0.0.0.0", "mine") == "mine"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "0.0.0.0", "--token", ""], "needs an access token"),
        (["--port", "70000"], "is not a port"),
        (["--timeout", "0"], "must be positive"),
        (["--frameworks", "numpy,caffe"], "caffe"),
    ],
)
def test_bad_options_are_refused_with_the_fix(served: Path, args: list[str], message: str) -> None:
    done = serve(str(served), *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def test_a_port_in_use_is_refused_with_the_fix(served: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        done = serve(str(served), "--port", str(taken.getsockname()[1]))
    assert done.returncode == 2 and "cannot serve on 127.0.0.1:" in done.stderr
    assert "--port" in done.stderr and "Traceback" not in done.stderr


def test_a_folder_without_runs_is_refused(tmp_path: Path) -> None:
    done = serve(str(tmp_path / "nothing"))
    assert done.returncode == 2 and "is not a folder" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bind_beyond_localhost_serves_only_with_its_token(served: Path, data_dir: Path) -> None:
    with serving(served, data_dir, "--host", "0.0.0.0") as (address, _):
        assert "?token=" in address
        parts = urlsplit(address)
        bare = f"http://127.0.0.1:{parts.port}/api/summary"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bare, timeout=30)
        assert refused.value.code == 403
        with urllib.request.urlopen(f"{bare}?{parts.query}", timeout=30) as answer:
            assert answer.status == 200
