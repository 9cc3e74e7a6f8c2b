"""``benchmarks/bench_serve.py`` on a tiny setting: it runs and prints its figures (the
figures themselves are measured alone on the machine, not here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_the_serve_benchmark_prints_its_figures(served: Path, data_dir: Path) -> None:
    command = [sys.executable, str(REPO / "benchmarks" / "bench_serve.py"), "--dir", str(served)]
    command += ["--frameworks", "numpy,pytorch", "--clients", "2", "--updates", "3"]
    command += ["--data-dir", str(data_dir)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    line = re.search(
        r"2 clients x 3: median (\d+) ms, p95 (\d+) ms .*; (\S+) updates/s; 0 failed", done.stdout
    )
    assert line and int(line.group(1)) <= int(line.group(2)), done.stdout
    assert re.search(r"page: (usable after \S+ s|not timed)", done.stdout)
