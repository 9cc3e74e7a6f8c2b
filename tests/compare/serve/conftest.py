"""A small results folder for the explorer's tests: NumPy and PyTorch, one epoch on 512
images (evaluated on 200 test images), trained once per test process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FRAMEWORKS = ("numpy", "pytorch")
TEST_IMAGES = 200


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("serve") / "runs"
    done = subprocess.run(
        [sys.executable, "-m", "compare", "run", "--frameworks", ",".join(FRAMEWORKS)]
        + ["--epochs", "1", "--subset", "512", "--eval-subset", str(TEST_IMAGES)]
        + ["--out", str(out), "--quiet"],
        env={**os.environ, "CNN_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return out
