"""A ``cnn-compare serve`` process of its own, with the address it printed: what the tests
over HTTP and ``benchmarks/bench_serve.py`` start."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from compare.engine.launch import stop

ADDRESS = re.compile(r"open (http://\S+)")


@contextmanager
def serving(
    folder: Path, data_dir: Path | None, *extra: str
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``cnn-compare serve FOLDER --port 0 ...`` (the dataset from ``data_dir``, else as the
    environment says): its printed address and the process; stopped with Ctrl-C's signal."""
    data = {"CNN_DATA_DIR": str(data_dir)} if data_dir else {}
    proc = subprocess.Popen(
        [sys.executable, "-m", "compare", "serve", str(folder), "--port", "0", *extra],
        env={**os.environ, **data},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, seen = time.monotonic() + 120, []
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError("cnn-compare serve ended: " + "".join(seen))
            seen.append(line)
            found = ADDRESS.search(line)
            if found:
                yield found.group(1), proc
                return
        raise AssertionError("cnn-compare serve printed no address: " + "".join(seen))
    finally:
        stop(proc)  # Ctrl-C's signal, then for good
