"""The scripts in benchmarks/, each on a tiny setting: they run, print their ratios and
write their results (the timing itself is ``compare.bench``'s, tested in tests/compare)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cnn_common.machine import BUSY_SHARE, other_cores_busy, usable_cores

REPO = Path(__file__).resolve().parents[1]
TINY = ["--train-images", "256", "--processes", "1", "--infer-images", "200"]
TINY += ["--phase-steps", "3"]


def run_script(name: str, out: Path, data_dir: Path) -> str:
    command = [sys.executable, str(REPO / "benchmarks" / name), *TINY, "--out", str(out)]
    env = {**os.environ, "CNN_DATA_DIR": str(data_dir)}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.slow
def test_numpy_vs_torch(tmp_path: Path, data_dir: Path) -> None:
    pytest.importorskip("torch")
    out = run_script("bench_numpy_vs_torch.py", tmp_path, data_dir)
    ratio = re.search(r"training epoch: numpy \S+ s vs pytorch \S+ s = (\S+)x", out)
    assert ratio and float(ratio.group(1)) > 0
    assert re.search(r"inference: numpy .* = \S+x", out)
    assert "peak memory: numpy" in out
    rows = json.loads((tmp_path / "numpy_vs_torch" / "bench.json").read_text())["rows"]
    assert [r["framework"] for r in rows] == ["pytorch", "numpy"]


@pytest.mark.slow
def test_lightning_vs_torch(tmp_path: Path, data_dir: Path) -> None:
    pytest.importorskip("lightning")
    out = run_script("bench_lightning_vs_torch.py", tmp_path, data_dir)
    assert re.search(r"turn by turn \S+x; Lightning.s cost [+-]\S+ ms per step", out)
    assert "per-step losses bit-identical: True" in out  # the same tensors, the same steps
    assert (tmp_path / "lightning_vs_torch" / "bench.json").exists()


@pytest.mark.slow
def test_keras_fit(tmp_path: Path, data_dir: Path) -> None:
    pytest.importorskip("keras")
    out = run_script("bench_keras_fit.py", tmp_path, data_dir)
    assert re.search(r"step: shared order \S+ ms vs plain fit \S+ ms = \S+x", out)
    rows = json.loads((tmp_path / "keras_fit" / "bench.json").read_text())["rows"]
    assert [r["native"] for r in rows] == [["order"], []]


@pytest.mark.slow
@pytest.mark.idle
def test_under_load(tmp_path: Path, data_dir: Path) -> None:
    if (other_cores_busy(1.0) or 0.0) > BUSY_SHARE * usable_cores():
        pytest.skip("other processes keep the machine busy: the idle half needs an idle machine")
    command = [sys.executable, str(REPO / "benchmarks" / "bench_under_load.py")]
    command += ["--train-images", "256", "--processes", "1", "--frameworks", "numpy"]
    command += ["--out", str(tmp_path)]
    env = {**os.environ, "CNN_DATA_DIR": str(data_dir)}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    line = re.search(r"numpy: idle \S+ s, beside the hog \S+ s = (\S+)x", result.stdout)
    assert line and float(line.group(1)) > 0
    assert "flagged busy: idle False, loaded True" in result.stdout
    assert (tmp_path / "idle" / "bench.json").exists() and (tmp_path / "loaded").exists()


@pytest.mark.slow
def test_run_overhead(tmp_path: Path, data_dir: Path) -> None:
    pytest.importorskip("torch")
    tiny = ["--frameworks", "numpy,pytorch", "--subset", "300", "--eval-subset", "200"]
    command = [sys.executable, str(REPO / "benchmarks" / "bench_run_overhead.py")]
    command += ["--against", str(REPO), "--rounds", "1", "--cold", "--", *tiny, "--epochs", "1"]
    env = {**os.environ, "CNN_DATA_DIR": str(data_dir)}
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("this", "against"):
        line = re.search(
            rf"{name}\s+wall\s+(\S+) s\s+training\s+(\S+) s\s+outside\s+(\S+) s", result.stdout
        )
        assert line, result.stdout
        wall, training, outside = map(float, line.groups())
        assert training > 0 and abs(wall - training - outside) < 0.2
    assert re.search(r"this / against, turn by turn: \[\S+\]", result.stdout)


def test_numpy_step_profile() -> None:
    pytest.importorskip("torch")
    command = [sys.executable, str(REPO / "benchmarks" / "bench_numpy_step_profile.py")]
    command += ["--steps", "2", "--top", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"resnet_small, 128 images a step, one thread: numpy \S+ ms vs pytorch", out)
    assert re.search(r"= \S+x \(median of 2 steps\)", out)
    numpy_rows = out.split("numpy, by own time (cProfile):\n")[1].split("pytorch, by own")[0]
    assert len(numpy_rows.splitlines()) == 3 and "ops.py:" in numpy_rows
    assert "aten::" in out.split("pytorch, by own time (torch.profiler):\n")[1]


# One bad input per script, and what its message must say.
BAD = {
    "bench_keras_fit.py": (["--processes", "0"], "--processes must be at least 1"),
    "bench_lightning_vs_torch.py": (["--epochs", "0"], "--epochs must be at least 1"),
    "bench_numpy_layer_allocations.py": (["--repeats", "0"], "--repeats must be at least 1"),
    "bench_numpy_step_profile.py": (["--steps", "0"], "--steps must be at least 1"),
    "bench_numpy_vs_torch.py": (["--train-images", "0"], "--train-images must be at least 1"),
    "bench_run_overhead.py": (["--rounds", "0"], "--rounds must be at least 1"),
    "bench_serve.py": (["--dir", "{tmp}/nowhere"], "nowhere is not a folder"),
    "bench_under_load.py": (["--spec", "{tmp}/none.yaml"], "cannot read spec file"),
}


def test_every_script_has_a_bad_input_case() -> None:
    assert sorted(BAD) == sorted(p.name for p in (REPO / "benchmarks").glob("bench_*.py"))


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_user_error_exits_2_with_the_fix_and_no_traceback(name: str, tmp_path: Path) -> None:
    """Every script answers bad input as the commands do: its message and the fix, exit 2."""
    args, says = BAD[name]
    command = [sys.executable, str(REPO / "benchmarks" / name)]
    command += [arg.format(tmp=tmp_path) for arg in args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and f"{name}: error: " in done.stderr, done.stderr
    assert says in done.stderr and "fix:" in done.stderr, done.stderr


def load_gpu_checks():  # noqa: ANN201 - the script as a module
    spec = importlib.util.spec_from_file_location(
        "gpu_checks", REPO / "benchmarks" / "gpu_checks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_gpu_checks_run_their_steps_on_the_cpu(tmp_path: Path, data_dir: Path) -> None:
    """``--device cpu`` checks the script: the probe's float32 products, two runs' bits."""
    pytest.importorskip("torch")
    command = [sys.executable, str(REPO / "benchmarks" / "gpu_checks.py"), "--device", "cpu"]
    command += ["--frameworks", "pytorch", "--subset", "256", "--out", str(tmp_path)]
    env = {**os.environ, "CNN_DATA_DIR": str(data_dir)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 processes in" in done.stdout and "every check passed" in done.stdout
    (found,) = json.loads((tmp_path / "gpu-checks.json").read_text())["results"]
    assert [(row["tf32"], row["op"]) for row in found["switch"]] == [
        (mode, op) for mode in ("off", "conv", "all") for op in ("matmul", "conv")
    ]
    assert all(0 < row["error"] < 2e-5 and not row["tf32_expected"] for row in found["switch"])
    assert found["deterministic_difference"] == 0 == found["nondeterministic_difference"]


def test_gpu_checks_name_what_failed() -> None:
    module = load_gpu_checks()
    row = {"tf32": "off", "op": "conv", "error": 3e-3, "tf32_expected": False, "ok": False}
    found = {"framework": "pytorch", "switch": [row], "deterministic_difference": 1e-6}
    assert module.failures(found) == [
        "tf32 off conv: error 3.0e-03",
        "two deterministic runs differ by 1.0e-06",
    ]
    assert module.failures({"framework": "keras", "error": "exit 1"}) == ["exit 1"]
    assert module.summary_line({**found, "process_s": 3.0}).startswith("FAIL pytorch")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--frameworks", "numpy"], "no GPU checks for numpy"),
        (["--subset", "0"], "--subset must be at least 1"),
        ([], "no GPU is visible here"),
    ],
)
def test_gpu_checks_refuse_bad_input(args: list[str], says: str, tmp_path: Path) -> None:
    command = [sys.executable, str(REPO / "benchmarks" / "gpu_checks.py"), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "gpu_checks.py: error: " in done.stderr
    assert says in done.stderr and "fix:" in done.stderr, done.stderr
