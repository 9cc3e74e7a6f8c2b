"""Small results folders for the explorer's tests, trained once per test process: the seed
model in NumPy and PyTorch, one epoch on 512 images (evaluated on 200 test images), and the
residual network of ``examples/resnet_small.yaml`` in NumPy on 256."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FRAMEWORKS = ("numpy", "pytorch")
TEST_IMAGES = 200


def _run(out: Path, data_dir: Path, *args: str) -> Path:
    done = subprocess.run(
        [sys.executable, "-m", "compare", "run", *args, "--epochs", "1"]
        + ["--eval-subset", str(TEST_IMAGES), "--out", str(out), "--quiet"],
        env={**os.environ, "CNN_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return out


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("serve") / "runs"
    return _run(out, data_dir, "--frameworks", ",".join(FRAMEWORKS), "--subset", "512")


@pytest.fixture(scope="session")
def served_resnet(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("serve-resnet") / "runs"
    spec = Path(__file__).resolve().parents[3] / "examples" / "resnet_small.yaml"
    return _run(out, data_dir, "--frameworks", "numpy", "--spec", str(spec), "--subset", "256")
