"""A run beside a CPU hog: its record and its report say the machine was busy, and a torch
process started on a busy machine lets OpenMP's threads sleep soon (GOMP_SPINCOUNT). The
slowdown is printed, not asserted (benchmarks/bench_under_load.py measures it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnn_common.machine import (
    BUSY_SHARE,
    BUSY_SPINCOUNT,
    other_cores_busy,
    set_openmp_wait_policy,
    usable_cores,
)
from compare.bench.measure import cpu_hog
from compare.engine.layout import REPORT_MD, run_dir


def train_lightning(out: Path, data_dir: Path) -> dict:
    command = [sys.executable, "-m", "compare", "run", "--frameworks", "lightning"]
    command += ["--subset", "5000", "--eval-subset", "500", "--epochs", "1", "--out", str(out)]
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env["CNN_DATA_DIR"] = str(data_dir)
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((run_dir(out, "lightning", 0) / "run.json").read_text())


@pytest.mark.slow
@pytest.mark.idle
def test_a_run_beside_a_cpu_hog_is_flagged_busy(tmp_path: Path, data_dir: Path) -> None:
    pytest.importorskip("lightning")
    if (other_cores_busy(1.0) or 0.0) > BUSY_SHARE * usable_cores():
        pytest.skip("other processes keep the machine busy: the idle half needs an idle machine")
    idle = train_lightning(tmp_path / "idle", data_dir)
    with cpu_hog(usable_cores()):
        loaded = train_lightning(tmp_path / "loaded", data_dir)
    ratio = loaded["epoch_times"][0] / idle["epoch_times"][0]
    print(f"lightning, 5,000 images: idle {idle['epoch_times'][0]:.3f} s, beside the hog "
          f"{loaded['epoch_times'][0]:.3f} s = {ratio:.2f}x")  # fmt: skip
    assert not idle["load"]["busy"] and loaded["load"]["busy"]
    assert loaded["load"]["other_cores"] > 0.5
    assert idle["environment"]["openmp_wait"] == "default"
    assert loaded["environment"]["openmp_wait"] == f"GOMP_SPINCOUNT={BUSY_SPINCOUNT}"
    report = (tmp_path / "loaded" / REPORT_MD).read_text()
    assert "BUSY" in report and "were measured while other processes kept" in report
    assert "BUSY" not in (tmp_path / "idle" / REPORT_MD).read_text()


def test_the_wait_policy_is_left_to_the_user_and_to_a_loaded_torch(monkeypatch) -> None:
    monkeypatch.setenv("GOMP_SPINCOUNT", "5")
    assert set_openmp_wait_policy() == "5"  # the user's choice wins
    monkeypatch.delenv("GOMP_SPINCOUNT")
    monkeypatch.setitem(sys.modules, "torch", sys.modules.get("torch", object()))
    assert set_openmp_wait_policy() == ""  # too late: libgomp has read its settings
    assert "GOMP_SPINCOUNT" not in os.environ
