"""`cnn-compare bench` and ``compare.bench``: every timing from fresh processes taking turns,
ratios to the plain PyTorch loop (the ``pytorch`` framework), shares of the machine's peak,
peak memory, a step by phase, and a machine-busy flag."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnn_common.spec import ModelSpec, flops
from compare.bench.measure import REFERENCE, variant_row
from compare.bench.tables import phase_table, table
from compare.engine.layout import BENCH_RECORD

FORWARD = flops(ModelSpec())


def record(framework: str, epochs: list[float], infer_s: float, busy: bool = False) -> dict:
    """A process's record as ``compare.bench.task`` writes it (10 steps of 128 images)."""
    return {
        "framework": framework,
        "native": [],
        "threads": 2,
        "device": "cpu (2 threads)",
        "train_images": 1280,
        "steps_per_epoch": 10,
        "epoch_times": epochs,
        "step_losses": [2.3] * 10 * len(epochs),
        "peak_gflops": 200.0,
        "train_peak_rss_mib": 400.0 + len(framework),
        "infer_images": 1000,
        "infer_s": infer_s,
        "phases": {"data": 0.001, "forward": 0.002, "backward": 0.003, "optimizer": 0.0005},
        "phases_note": "",
        "load": {"busy": busy, "other_cores": 1.5 if busy else 0.0},
    }


def test_summaries_are_medians_over_processes_with_ratios_to_the_reference() -> None:
    torch_runs = [record("pytorch", [1.0], 0.10), record("pytorch", [1.2], 0.12)]
    numpy_runs = [record("numpy", [t], i) for t, i in ((1.5, 0.2), (2.1, 0.1), (1.8, 0.3))]
    ref = variant_row(torch_runs, ModelSpec())
    row = variant_row(numpy_runs, ModelSpec(), ref, torch_runs)
    assert ref["epoch_s"] == pytest.approx(1.1) and row["epoch_s"] == 1.8  # medians
    assert row["train_time_ratio"] == pytest.approx(1.8 / 1.1)
    assert row["paired_time_ratio"] == pytest.approx((1.5 / 1.0 + 2.1 / 1.2) / 2)  # by turn
    assert row["step_ms"] == pytest.approx(180.0)
    assert row["train_images_per_s"] == pytest.approx(1280 / 1.8)
    assert row["train_gflops"] == pytest.approx(3 * FORWARD * 1280 / 1.8 / 1e9)
    assert row["train_peak_share"] == pytest.approx(row["train_gflops"] / 200.0)
    assert row["infer_time_ratio"] == pytest.approx(0.2 / 0.11)  # median inference times
    assert row["infer_gflops"] == pytest.approx(FORWARD * 1000 / 0.2 / 1e9)
    assert row["phases_ms"] == {"data": 1.0, "forward": 2.0, "backward": 3.0, "optimizer": 0.5}
    assert row["epoch_spread_s"] == [1.5, 2.1] and row["processes"] == 3
    assert not row["busy"]


def test_a_timing_from_a_busy_machine_is_flagged() -> None:
    rows = [variant_row([record("numpy", [1.0], 0.1, busy=True)], ModelSpec())]
    assert rows[0]["busy"] and rows[0]["other_cores"] == 1.5
    assert "numpy (machine busy)" in table(rows)
    assert "forward + loss" in phase_table(rows)


@pytest.mark.slow
def test_bench_command(tmp_path: Path, data_dir: Path) -> None:
    pytest.importorskip("torch")
    command = [sys.executable, "-m", "compare", "bench", "--frameworks", "numpy"]
    command += ["--train-images", "384", "--processes", "2", "--infer-images", "300"]
    command += ["--phase-steps", "4", "--out", str(tmp_path)]
    env = {**os.environ, "CNN_DATA_DIR": str(data_dir)}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert REFERENCE == "pytorch"
    report = json.loads((tmp_path / "bench.json").read_text())
    rows = {row["framework"]: row for row in report["rows"]}
    assert list(rows) == ["pytorch", "numpy"]  # the reference first
    records = report["records"]
    assert [len(records[name]) for name in rows] == [2, 2]  # two fresh processes each
    for name, runs in records.items():
        assert all(r["framework"] == name and len(r["epoch_times"]) == 1 for r in runs)
        assert all(r["steps_per_epoch"] == 3 and r["infer_images"] == 300 for r in runs)
        assert all(r["peak_gflops"] > 0 and r["train_peak_rss_mib"] > 50 for r in runs)
        assert {"forward", "backward", "optimizer"} <= set(runs[0]["phases"])
    # the processes took turns: pytorch 1, numpy 1, pytorch 2, numpy 2
    jobs = sorted((tmp_path / "bench-jobs").iterdir(), key=lambda p: p.stat().st_mtime)
    assert [p.name for p in jobs] == ["pytorch-1", "numpy-1", "pytorch-2", "numpy-2"]
    assert all((p / BENCH_RECORD).exists() for p in jobs)
    assert rows["pytorch"]["train_time_ratio"] == 1.0
    assert rows["numpy"]["train_time_ratio"] == pytest.approx(
        rows["numpy"]["epoch_s"] / rows["pytorch"]["epoch_s"]
    )
    assert "time / pytorch" in result.stdout and "| numpy" in result.stdout
    assert "where a training step's time goes" in result.stdout
    assert "machine peak" in result.stdout
