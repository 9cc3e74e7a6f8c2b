"""`cnn-compare bench`: throughput of a framework against the plain PyTorch loop (the
``pytorch`` framework), as ratios."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnn_common.spec import ModelSpec, flops
from compare.bench import REFERENCE


@pytest.mark.slow
def test_bench_reports_ratios_against_the_pytorch_framework(tmp_path: Path, data_dir: Path) -> None:
    pytest.importorskip("torch")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "compare",
            "bench",
            "--frameworks",
            "numpy",
            "--train-images",
            "512",
            "--repeats",
            "1",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "CNN_DATA_DIR": str(data_dir)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert REFERENCE == "pytorch"
    report = json.loads((tmp_path / "bench.json").read_text())
    rows = {row["framework"]: row for row in report["rows"]}
    assert list(rows) == ["pytorch", "numpy"]  # the reference first
    assert rows["pytorch"]["train_time_ratio"] == 1.0
    assert rows["pytorch"]["infer_time_ratio"] == 1.0
    numpy_row, numpy_record = rows["numpy"], report["records"]["numpy"]
    torch_record = report["records"]["pytorch"]
    assert numpy_record["framework"] == "numpy" and torch_record["framework"] == "pytorch"
    assert numpy_row["train_time_ratio"] == pytest.approx(
        numpy_record["epoch_s"] / torch_record["epoch_s"]
    )
    assert numpy_row["train_images_per_s"] == pytest.approx(512 / numpy_record["epoch_s"])
    assert numpy_row["infer_gflops"] == pytest.approx(
        flops(ModelSpec()) * numpy_row["infer_images_per_s"] / 1e9
    )
    assert numpy_row["infer_time_ratio"] == pytest.approx(
        numpy_record["infer_s"] / torch_record["infer_s"]
    )
    assert numpy_row["train_gflops"] == pytest.approx(
        3 * flops(ModelSpec()) * numpy_row["train_images_per_s"] / 1e9
    )
    assert "train time / pytorch" in result.stdout
    assert "| pytorch" in result.stdout and "| numpy" in result.stdout
