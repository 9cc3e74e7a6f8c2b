"""The main job end to end: the README's `cnn-compare run` on MNIST, and kill + --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnn_common.results import RunResult
from compare.engine.layout import CONFIG_FILE, CONVERT_FILE, CONVERTED_DIR, run_dir
from tests.compare.test_report import EXPECTED_FIGURES, check_self_contained
from tests.waiting import hold_env, pid_alive, scaled, wait_held, wait_until

FRAMEWORKS = ("numpy", "keras", "lightning")


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, float]:
    """`cnn-compare run` with every default (numpy, keras, lightning; MNIST, 5 epochs, shared
    init)."""
    out = tmp_path_factory.mktemp("compare") / "out"
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "compare", "run", "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        env={**os.environ, "CNN_DATA_DIR": str(data_dir)},
        timeout=scaled(1200),
    )
    wall = time.perf_counter() - start
    assert result.returncode == 0, result.stdout + result.stderr
    print(f"\ncnn-compare run wall time: {wall:.0f} s\n{result.stdout}")
    return out, wall


@pytest.mark.slow
def test_default_run_writes_every_output(default_run: tuple[Path, float]) -> None:
    out, _ = default_run
    written = ("results.json", "history.csv", "report.md", "report.html", "config.json")
    for name in (*written, "wall.json"):
        assert (out / name).is_file(), name
    assert "wall time" in (out / "report.md").read_text().splitlines()[2]
    # the per-run figures, and the cross-evaluation's (a run of several frameworks has one)
    assert {p.name for p in (out / "figures").glob("*.png")} == EXPECTED_FIGURES | {"crosseval.png"}
    check_self_contained(out)


@pytest.mark.slow
def test_default_run_cross_evaluates_the_same_weights_everywhere(
    default_run: tuple[Path, float],
) -> None:
    """The same weights give the same predictions in every framework, except near-ties, and
    the report names each of those."""
    out, _ = default_run
    crosseval = json.loads((out / "crosseval.json").read_text())
    assert crosseval["frameworks"] == list(FRAMEWORKS)
    assert crosseval["all_near_ties"], crosseval["cases"]
    report = (out / "report.md").read_text()
    for case in crosseval["cases"]:
        assert case["near_tie"] and f"| {case['image']} |" in report
    for source in FRAMEWORKS:
        own = crosseval["accuracy"][source][source]
        for evaluator in FRAMEWORKS:
            differing = crosseval["differ"][source][evaluator]
            assert differing <= 5, (source, evaluator, differing)  # a handful at most
            assert abs(crosseval["accuracy"][source][evaluator] - own) <= differing / 10_000


@pytest.mark.slow
def test_default_run_accuracy(default_run: tuple[Path, float]) -> None:
    out, _ = default_run
    runs = {fw: RunResult.from_json(run_dir(out, fw, 0) / "run.json") for fw in FRAMEWORKS}
    accuracies = {fw: run.test_accuracy for fw, run in runs.items()}
    for fw, run in runs.items():
        assert run.init == "shared"
        assert len(run.history) == 5
        assert len(run.step_losses) == 5 * 430  # ceil(55,000 / 128) steps a epoch
        assert run.sizes == {"train": 55_000, "val": 5_000, "test": 10_000}
        assert accuracies[fw] >= 0.985, accuracies
    # Shared initial weights and one batch order: the three land close together.
    assert max(accuracies.values()) - min(accuracies.values()) <= 0.003, accuracies


@pytest.mark.slow
def test_default_run_deploys_within_the_goals(default_run: tuple[Path, float]) -> None:
    """The keras run deployed (`convert --litert --quantize int8 --onnx`): the int8 formats
    within 0.3 points of their float model's accuracy and at least 3x smaller, every layer
    quantized; the float formats within 1e-5 of the largest source logit and at most a few
    float32 ulps from the source's logits (on 10,000 trained logits it is 5 to 6 ulps); the
    report shows the table."""
    out, _ = default_run
    run = run_dir(out, "keras", 0)
    args = ["convert", str(run), "--to", "keras", "--litert", "--quantize", "int8", "--onnx"]
    done = subprocess.run(
        [sys.executable, "-m", "compare", *args, "--repeats", "20"],
        capture_output=True,
        text=True,
        timeout=scaled(900),
    )
    table = json.loads((run / CONVERTED_DIR / CONVERT_FILE).read_text())["deployment"]
    rows = {entry["format"]: entry for entry in table["rows"]}
    assert list(rows) == ["keras (own file)", "onnx", "onnx int8", "litert", "litert int8"]
    assert done.returncode == (0 if all(e["ok"] for e in rows.values()) else 1), done.stderr
    for name in ("keras (own file)", "onnx", "litert"):
        entry = rows[name]
        limit = 1e-5 * max(1.0, entry["logit_scale"])
        assert (
            entry["ok"] and entry["max_abs"] <= limit and "(1e-05 of the largest)" in entry["goal"]
        )
        assert entry["ulps"] <= 16 and entry["differ"] <= 2, entry  # rounding, not a bug
    for name in ("onnx int8", "litert int8"):
        assert rows[name]["ok"] and rows[name]["points_lost"] <= 0.3, rows[name]
        assert rows[name]["smaller"] >= 3 and rows[name]["float_layers"] == []
        assert rows[name]["accuracy"] >= 0.985
    subprocess.run(
        [sys.executable, "-m", "compare", "report", str(out)], check=True, capture_output=True
    )
    assert "## Deployment: keras-seed0" in (out / "report.md").read_text()


@pytest.mark.slow
def test_kill_during_second_framework_then_resume(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "out"
    args = [
        sys.executable,
        "-m",
        "compare",
        "run",
        "--frameworks",
        "numpy,lightning",
        "--subset",
        "3000",
        "--epochs",
        "2",
        "--out",
        str(out),
        "--quiet",
        "--data-dir",
        str(data_dir),
    ]
    hold = tmp_path / "hold"  # the second framework holds at its first step until the kill
    proc = subprocess.Popen(
        args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=hold_env(dict(os.environ), hold, "step:1", framework="lightning"),
    )
    worker = wait_held(hold, "the second framework (lightning) to train", proc, seconds=600)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # the worker gets SIGTERM when its parent dies
    wait_until(lambda: not pid_alive(worker), "the worker to end with its parent", 30)
    first = run_dir(out, "numpy", 0)
    assert (first / "run.json").is_file()
    assert not (run_dir(out, "lightning", 0) / "run.json").exists()
    record_mtime = (first / "run.json").stat().st_mtime_ns
    events_size = (first / "events.jsonl").stat().st_size

    config = (out / CONFIG_FILE).read_text()
    # A bare --resume: the frameworks, subset and epochs come from the saved configuration.
    bare = [sys.executable, "-m", "compare", "run", "--resume", "--out", str(out), "--quiet"]
    result = subprocess.run(
        [*bare, "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=scaled(600)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The first framework was not trained again: its record and its event log are untouched.
    assert (first / "run.json").stat().st_mtime_ns == record_mtime
    assert (first / "events.jsonl").stat().st_size == events_size
    results = json.loads((out / "results.json").read_text())
    assert [r["framework"] for r in results["summary"]] == ["numpy", "lightning"]
    assert results["failures"] == []
    assert (out / CONFIG_FILE).read_text() == config
    resumed = RunResult.from_json(run_dir(out, "lightning", 0) / "run.json")
    assert resumed.sizes["train"] == 3000 and len(resumed.history) == 2


@pytest.mark.slow
def test_resume_refuses_a_different_configuration(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "out"
    base = [
        sys.executable,
        "-m",
        "compare",
        "run",
        "--frameworks",
        "numpy",
        "--subset",
        "300",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--quiet",
        "--data-dir",
        str(data_dir),
    ]
    assert subprocess.run(base, capture_output=True, timeout=scaled(300)).returncode == 0
    again = subprocess.run(base, capture_output=True, text=True, timeout=scaled(300))
    assert again.returncode == 2 and "already holds results" in again.stderr
    # --resume reads the configuration back: giving a flag that decides the results is refused
    other = subprocess.run(
        [*base, "--resume", "--epochs", "2"], capture_output=True, text=True, timeout=scaled(300)
    )
    assert other.returncode == 2
    assert f"--resume takes its configuration from {out / CONFIG_FILE}" in other.stderr
    assert "--frameworks, --subset, --epochs" in other.stderr
    assert "Traceback" not in again.stderr + other.stderr


@pytest.mark.slow
def test_in_process_run_over_two_seeds(tmp_path: Path, data_dir: Path) -> None:
    """--in-process trains in this process; --seeds 2 gives two records and a mean ± std."""
    from compare.__main__ import main

    out = tmp_path / "out"
    status = main(
        [
            "run",
            "--frameworks",
            "numpy",
            "--subset",
            "500",
            "--epochs",
            "1",
            "--seeds",
            "2",
            "--in-process",
            "--quiet",
            "--out",
            str(out),
            "--data-dir",
            str(data_dir),
        ]
    )
    assert status == 0
    runs = [RunResult.from_json(run_dir(out, "numpy", seed) / "run.json") for seed in (0, 1)]
    assert [run.train_spec["seed"] for run in runs] == [0, 1]
    assert runs[0].step_losses != runs[1].step_losses  # another seed: other weights and order
    summary = json.loads((out / "results.json").read_text())["summary"]
    assert summary[0]["seeds"] == 2
    accuracies = [run.test_accuracy for run in runs]
    assert summary[0]["test_accuracy"] == pytest.approx(sum(accuracies) / 2)
    assert "±" in (out / "report.md").read_text()


def test_bare_resume_uses_the_saved_configuration(tmp_path: Path, data_dir: Path) -> None:
    """`cnn-compare run --resume --out DIR` alone finishes DIR's run as it was configured."""
    from compare.__main__ import main

    out = tmp_path / "out"
    first = [
        "run",
        "--frameworks",
        "numpy",
        "--subset",
        "300",
        "--eval-subset",
        "200",
        "--epochs",
        "1",
        "--seed",
        "3",
        "--quiet",
        "--out",
        str(out),
        "--data-dir",
        str(data_dir),
    ]
    assert main(first) == 0
    path = run_dir(out, "numpy", 3)
    before = RunResult.from_json(path / "run.json")
    config = (out / CONFIG_FILE).read_text()
    (path / "run.json").unlink()  # killed after its last checkpoint, before the record
    assert main(["run", "--resume", "--out", str(out), "--quiet", "--data-dir", str(data_dir)]) == 0
    after = RunResult.from_json(path / "run.json")
    # The saved subset, epochs and seed, not the defaults (which would train on 55,000 images).
    assert after.sizes == {"train": 300, "val": 200, "test": 200}
    assert (after.train_spec["epochs"], after.train_spec["seed"]) == (1, 3)
    assert after.extra["resumed_from_epoch"] == 1  # from the checkpoint, nothing retrained
    assert after.step_losses == before.step_losses
    assert after.init_digest == before.init_digest
    assert after.test_accuracy == before.test_accuracy
    assert (out / CONFIG_FILE).read_text() == config
