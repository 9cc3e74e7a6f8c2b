"""`cnn-compare parity`: the three agree on identical weights and batches; a planted
difference is caught and located."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnn_common.spec import ModelSpec
from cnn_common.weights import weight_names
from compare.parity import compare_frameworks


def recorded(rng: np.random.Generator) -> dict[str, np.ndarray]:
    arrays = {}
    names = weight_names(ModelSpec())
    for k in range(3):
        arrays[f"step{k}/logits"] = rng.normal(size=(8, 10))
        arrays[f"step{k}/loss"] = np.asarray(rng.random())
        for name in names:
            arrays[f"step{k}/grad/{name}"] = rng.normal(size=4)
            arrays[f"step{k}/weights/{name}"] = rng.normal(size=4)
    return arrays


def test_identical_records_pass() -> None:
    a = recorded(np.random.default_rng(0))
    rows, first = compare_frameworks({"x": a, "y": dict(a)}, weight_names(ModelSpec()), "float32")
    assert first is None and all(r["ok"] for r in rows)


def test_first_departure_is_named() -> None:
    a = recorded(np.random.default_rng(0))
    b = {k: v.copy() for k, v in a.items()}
    b["step1/grad/conv2.kernel"][0] *= 1.01  # a 1% error in one gradient entry
    b["step2/logits"][0, 0] += 1.0  # and a later, larger one
    _, first = compare_frameworks({"x": a, "y": b}, weight_names(ModelSpec()), "float32")
    assert first is not None
    assert (first["step"], first["quantity"], first["tensor"]) == (1, "grad", "conv2.kernel")


def parity(*args: str, data_dir: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "compare", "parity", "--out", str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "CNN_DATA_DIR": str(data_dir)},
    )


@pytest.mark.slow
def test_parity_float32_all_three(tmp_path: Path, data_dir: Path) -> None:
    result = parity("--steps", "3", data_dir=data_dir, tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "parity.json").read_text())
    assert set(report["frameworks"]) == {"numpy", "keras", "lightning"}
    logits = [r for r in report["rows"] if r["quantity"] == "logits"]
    grads = [r for r in report["rows"] if r["quantity"] == "grad"]
    updates = [r for r in report["rows"] if r["quantity"] == "weights"]
    assert logits and max(r["max_abs"] for r in logits) <= 1e-5
    assert grads and max(r["max_rel"] for r in grads) <= 1e-4
    assert updates and max(r["norm_rel"] for r in updates) <= 1e-3


@pytest.mark.slow
def test_parity_float64_all_three(tmp_path: Path, data_dir: Path) -> None:
    """In float64 only the order of summation differs: 1e-10 everywhere, updates included."""
    result = parity("--dtype", "float64", "--steps", "3", data_dir=data_dir, tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "parity.json").read_text())
    assert set(report["frameworks"]) == {"numpy", "keras", "lightning"}
    rows = report["rows"]
    assert max(r["max_rel"] for r in rows if r["quantity"] == "grad") <= 1e-10
    assert max(r["max_abs"] for r in rows if r["quantity"] == "logits") <= 1e-10
    assert max(r["norm_rel"] for r in rows if r["quantity"] == "weights") <= 1e-9


def test_update_tolerance_tells_epsilon_conventions_apart() -> None:
    """A framework using the other Adam epsilon convention departs at float32 tolerance."""
    numpy_cnn = pytest.importorskip("numpy_cnn")
    from cnn_common.spec import TrainSpec
    from cnn_common.weights import init_weights
    from compare.parity import TOLERANCES, compare_arrays

    rng = np.random.default_rng(0)
    spec = ModelSpec()
    start = init_weights(spec, 0)
    batches = [
        (rng.random((64, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 64)) for _ in range(3)
    ]
    updates = {}
    for convention in ("torch", "keras"):
        model = numpy_cnn.build(spec)
        numpy_cnn.set_weights(model, start)
        numpy_cnn.train_steps(model, TrainSpec(epsilon_convention=convention), batches)
        updates[convention] = {k: v - start[k] for k, v in numpy_cnn.get_weights(model).items()}
    worst = max(compare_arrays(updates["torch"][k], updates["keras"][k])[2] for k in start)
    assert worst > 10 * TOLERANCES["float32"]["weights"][1]
