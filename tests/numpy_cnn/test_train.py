"""numpy_cnn.training and the ``numpy-cnn`` command: the run record, checkpoints, resume with
dropout and augmentation, user errors, and the 5-epoch MNIST accuracy (slow). A NaN loss and
resume after a SIGKILL are the contract suite's (tests/contract)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnn_common.batches import steps_per_epoch
from cnn_common.data import Data, subset
from cnn_common.errors import UserError
from cnn_common.events import Event
from cnn_common.results import RESULT_FILE, WEIGHTS_FILE, RunResult
from cnn_common.spec import DenseLayer, ModelSpec, TrainSpec
from cnn_common.weights import init_weights, load_weights
from numpy_cnn import train
from numpy_cnn.__main__ import main

TINY_SPEC = ModelSpec(dense=(DenseLayer(units=32, dropout=0.25),))


def cli(*args: str, data_dir: Path) -> list[str]:
    return [sys.executable, "-m", "numpy_cnn", "train", "--data-dir", str(data_dir), *args]


def test_train_writes_the_run_record(mnist: Data, tmp_path: Path, capsys) -> None:
    data = subset(mnist, 1000, 200, 300)
    events: list[Event] = []
    spec = TrainSpec(epochs=2, batch_size=100)
    result = train(ModelSpec(), spec, data, tmp_path, on_event=events.append, progress=False)
    assert capsys.readouterr().out == ""
    steps = steps_per_epoch(1000, 100)
    assert len(result.step_losses) == 2 * steps
    assert [h.epoch for h in result.history] == [1, 2]
    assert result.history[0].train_loss == pytest.approx(np.mean(result.step_losses[:steps]))
    assert result.history[1].train_loss < result.history[0].train_loss
    assert result.init == "native" and result.framework == "numpy"
    assert "numpy" in result.versions
    assert len(result.predictions) == 300
    assert result.sizes == {"train": 1000, "val": 200, "test": 300}
    assert result.peak_memory_mb > 0
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert kinds.count("step") == 2 * steps and kinds.count("epoch") == 2
    assert [Event.from_json(e.to_json()) for e in events] == events  # JSON-safe
    json.dumps([e.to_dict() for e in events])
    again = RunResult.from_json(tmp_path / RESULT_FILE)
    assert again.step_losses == result.step_losses
    weights, model_spec, train_spec = load_weights(tmp_path / WEIGHTS_FILE)
    assert model_spec == ModelSpec() and train_spec == spec
    assert sorted((tmp_path / "checkpoints").iterdir())[-1].name == "epoch-0002.npz"


def test_shared_init_and_float64(mnist: Data, tmp_path: Path) -> None:
    data = subset(mnist, 300, 50, 50)
    spec = TrainSpec(epochs=1, batch_size=100, dtype="float64")
    weights = init_weights(TINY_SPEC, 0, "float64")
    result = train(TINY_SPEC, spec, data, tmp_path, init_weights=weights, progress=False)
    assert result.init == "shared"
    saved, _, _ = load_weights(tmp_path / WEIGHTS_FILE)
    assert saved["conv1.kernel"].dtype == np.float64


def test_resume_in_process_is_bit_identical(mnist: Data, tmp_path: Path) -> None:
    """Dropout and augmentation draw random numbers: their state must survive the restart."""
    data = subset(mnist, 600, 60, 60)
    spec = TrainSpec(epochs=3, batch_size=100, augment_shift=2)
    full = train(TINY_SPEC, spec, data, tmp_path / "full", progress=False)
    train(TINY_SPEC, dataclasses.replace(spec, epochs=2), data, tmp_path / "cut", progress=False)
    resumed = train(TINY_SPEC, spec, data, tmp_path / "cut", resume=True, progress=False)
    assert resumed.step_losses == full.step_losses
    assert resumed.extra["resumed_from_epoch"] == 2
    a, _, _ = load_weights(tmp_path / "full" / WEIGHTS_FILE)
    b, _, _ = load_weights(tmp_path / "cut" / WEIGHTS_FILE)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_resume_with_another_spec_is_a_user_error(mnist: Data, tmp_path: Path) -> None:
    data = subset(mnist, 200, 20, 20)
    train(ModelSpec(), TrainSpec(epochs=1, batch_size=100), data, tmp_path, progress=False)
    # The message names what differs (cnn_common.files.check_resumable).
    with pytest.raises(
        UserError, match=r"another spec \(differs in: model\.dense, train\.batch_size\)"
    ):
        train(TINY_SPEC, TrainSpec(epochs=2), data, tmp_path, resume=True, progress=False)


def test_gpu_is_refused(mnist: Data, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="CPU"):
        train(ModelSpec(), TrainSpec(epochs=1), subset(mnist, 10), tmp_path, device="gpu")


def test_cli_user_errors_exit_2_without_traceback(capsys) -> None:
    assert main(["train", "--set", "conv.0.kernel_size=40", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("numpy-cnn: error:") and "conv1" in err
    assert "Traceback" not in err


def test_cli_trains_a_subset(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = subprocess.run(
        cli(
            "--subset",
            "500",
            "--epochs",
            "1",
            "--batch-size",
            "64",
            "--out",
            str(out),
            data_dir=data_dir,
        ),
        capture_output=True,
        text=True,
        check=True,
    )
    assert "epoch 1/1" in done.stdout and "test accuracy" in done.stdout
    result = RunResult.from_json(out / RESULT_FILE)
    assert len(result.step_losses) == steps_per_epoch(500, 64)
    assert result.train_spec["batch_size"] == 64
    assert "weight decay" not in done.stdout and "schedule" not in done.stdout


def test_cli_says_the_decay_and_schedule_it_trains_with(data_dir: Path, tmp_path: Path) -> None:
    settings = ["--set", "weight_decay=0.01", "--set", "lr_schedule=cosine"]
    args = ["--subset", "300", "--epochs", "1", *settings, "--out", str(tmp_path / "run")]
    done = subprocess.run(cli(*args, data_dir=data_dir), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "numpy_cnn: l2 weight decay 0.01 on all; cosine schedule per epoch\n" in done.stdout
    result = RunResult.from_json(tmp_path / "run" / RESULT_FILE)
    assert (
        result.train_spec["weight_decay"] == 0.01 and result.train_spec["lr_schedule"] == "cosine"
    )


@pytest.mark.slow
def test_cli_defaults_reach_98_5_percent_on_mnist(data_dir: Path, tmp_path: Path) -> None:
    """``numpy-cnn train`` with the defaults: 55,000 / 5,000 split, seed 0, 5 epochs."""
    out = tmp_path / "mnist"
    env = {**os.environ, "CNN_DATA_DIR": str(data_dir)}
    subprocess.run(
        [sys.executable, "-m", "numpy_cnn", "train", "--out", str(out), "--quiet"],
        env=env,
        check=True,
    )
    result = RunResult.from_json(out / RESULT_FILE)
    assert len(result.history) == 5
    assert len(result.step_losses) == 5 * steps_per_epoch(55_000, 128)
    assert result.test_accuracy >= 0.985
    assert len(result.predictions) == 10_000
