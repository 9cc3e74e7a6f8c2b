"""The ``pytorch-cnn`` command: it trains a subset and writes the run record, a GPU that is not
there is a user error, and the 5-epoch MNIST accuracy of the default run (slow). What every
framework's train does (NaN loss, resume after a kill) is the contract suite's."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from cnn_common.batches import steps_per_epoch  # noqa: E402
from cnn_common.results import RESULT_FILE, WEIGHTS_FILE, RunResult  # noqa: E402
from cnn_common.spec import ModelSpec, TrainSpec  # noqa: E402
from cnn_common.weights import load_weights, weight_names  # noqa: E402
from pytorch_cnn.__main__ import main  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, data_dir: Path) -> list[str]:
    return [sys.executable, "-m", "pytorch_cnn", "train", "--data-dir", str(data_dir), *args]


def test_cli_trains_a_subset_and_writes_the_run_record(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = subprocess.run(
        cli("--subset", "500", "--epochs", "1", "--batch-size", "64", "--out", str(out),
            data_dir=data_dir),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "epoch 1/1" in done.stdout and "test accuracy" in done.stdout
    result = RunResult.from_json(out / RESULT_FILE)
    assert (result.framework, result.backend, result.init) == ("pytorch", "torch", "native")
    assert result.device.startswith("cpu") or result.device.startswith("cuda")
    assert "torch" in result.versions
    assert len(result.step_losses) == steps_per_epoch(500, 64)
    assert result.train_spec["batch_size"] == 64
    # --subset cuts the training images only: validation and test stay whole
    assert result.sizes == {"train": 500, "val": 5000, "test": 10_000}
    assert len(result.predictions) == 10_000
    weights, model_spec, train_spec = load_weights(out / WEIGHTS_FILE)
    assert model_spec == ModelSpec() and train_spec.batch_size == 64
    assert sorted(weights) == sorted(weight_names(ModelSpec()))
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch-0001.pt"]


def test_device_gpu_without_a_gpu_is_a_user_error(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    out = tmp_path / "run"
    args = ["train", "--device", "gpu", "--subset", "100", "--epochs", "1", "--quiet"]
    assert main([*args, "--data-dir", str(data_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pytorch-cnn: error: ") and "no GPU" in err and "fix:" in err
    assert "Traceback" not in err
    assert not (out / RESULT_FILE).exists()


@pytest.mark.slow
def test_the_default_run_reaches_98_5_percent_on_mnist(data_dir: Path, tmp_path: Path) -> None:
    """``pytorch-cnn train`` with the defaults: 55,000 / 5,000 split, seed 0, 5 epochs."""
    env = {**os.environ, "CNN_DATA_DIR": str(data_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "pytorch_cnn", "train", "--quiet", "--out", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = RunResult.from_json(tmp_path / RESULT_FILE)
    assert result.test_accuracy >= 0.985
    assert len(result.history) == 5 and len(result.step_losses) == 5 * 430
    assert result.history[-1].val_accuracy >= 0.98
    assert result.train_spec == dataclasses.asdict(TrainSpec())
    assert len(result.predictions) == 10_000
