"""keras_cnn.training and the CLI: the run record, the shared batch order, per-step losses, resume
checks, backends in their own processes, and the MNIST accuracy of the default run. A NaN loss
and resume after a SIGKILL are the contract suite's (tests/contract)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from cnn_common.batches import augment_batch, epoch_batches
from cnn_common.data import Data, subset
from cnn_common.errors import UserError
from cnn_common.events import End, Event, Start, Step
from cnn_common.results import RESULT_FILE, WEIGHTS_FILE, RunResult
from cnn_common.spec import ModelSpec, TrainSpec
from cnn_common.weights import init_weights, load_weights
from keras_cnn.__main__ import BACKENDS, main  # imports no keras: the CLI picks the backend first

SMALL = ModelSpec(dense=({"units": 32},))


# keras is imported by fixtures, not at collection: conftest points KERAS_HOME at a temporary
# folder first (importing keras writes keras.json there).
@pytest.fixture(scope="module")
def km() -> ModuleType:
    """keras_cnn.model."""
    pytest.importorskip("keras")
    return importlib.import_module("keras_cnn.model")


@pytest.fixture(scope="module")
def kt(km: ModuleType) -> ModuleType:
    """keras_cnn.training."""
    return importlib.import_module("keras_cnn.training")


def run_python(code: str, env_extra: dict[str, str] | None = None, timeout: float = 300):
    """Run ``code`` in a fresh interpreter (a process of its own per Keras backend)."""
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env.update({"TF_CPP_MIN_LOG_LEVEL": "2", **(env_extra or {})})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "keras_cnn", "train", "--quiet", *args]


@pytest.fixture(scope="module")
def small(mnist: Data) -> Data:
    return subset(mnist, 640, 128, 256)


def test_train_writes_the_run_record(
    small: Data, tmp_path: Path, capsys, km: ModuleType, kt: ModuleType
) -> None:
    train_spec = TrainSpec(epochs=2, batch_size=64)
    weights = init_weights(SMALL, seed=0)
    events: list[Event] = []
    result = kt.train(SMALL, train_spec, small, tmp_path, weights, events.append, progress=False)
    assert capsys.readouterr().out == ""  # progress=False prints nothing
    assert (result.framework, result.backend, result.init) == ("keras", "tensorflow", "shared")
    assert result.device == "cpu" and "keras" in result.versions
    steps = 10
    assert len(result.step_losses) == 2 * steps
    for i, record in enumerate(result.history):
        assert record.epoch == i + 1
        epoch_losses = result.step_losses[i * steps : (i + 1) * steps]
        assert record.train_loss == pytest.approx(np.mean(epoch_losses), rel=1e-12)
        assert 0 <= record.val_accuracy <= 1 and record.time_s > 0
    assert len(result.predictions) == 256
    assert result.sizes == {"train": 640, "val": 128, "test": 256}
    assert result.test_accuracy == pytest.approx(
        np.mean(np.array(result.predictions) == small.y_test)
    )
    assert RunResult.from_json(tmp_path / RESULT_FILE) == result
    saved, spec, _ = load_weights(tmp_path / WEIGHTS_FILE)
    assert spec == SMALL and not np.array_equal(saved["conv1.kernel"], weights["conv1.kernel"])
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "epoch-0001.npz",
        "epoch-0002.npz",
    ]
    kinds = [e.kind for e in events]
    assert kinds == ["start"] + (["step"] * steps + ["epoch"]) * 2 + ["end"]
    assert events[0] == Start("keras", 2, steps, 0)
    assert isinstance(events[1], Step)
    assert (events[1].epoch, events[1].step, events[1].steps) == (1, 1, steps)
    assert isinstance(events[-1], End) and events[-1].test_accuracy == result.test_accuracy

    # The first recorded loss is the real loss of the first shared batch under the initial
    # weights (not a running mean, not another batch).
    model = km.build(SMALL)
    km.set_weights(model, weights)
    idx = epoch_batches(640, 64, seed=0, epoch=0)[0]
    first_loss, _ = km.loss_and_grads(model, small.x_train[idx], small.y_train[idx])
    assert result.step_losses[0] == pytest.approx(first_loss, rel=1e-6)


def test_fit_follows_the_shared_batch_order_unshuffled(
    small: Data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kt: ModuleType
) -> None:
    laid_out: list[int] = []
    epoch_arrays = kt.epoch_arrays

    def recording(x, y, train_spec, epoch, into=None):  # noqa: ANN001, ANN202 - as epoch_arrays
        laid_out.append(epoch)
        return epoch_arrays(x, y, train_spec, epoch, into)

    monkeypatch.setattr(kt, "epoch_arrays", recording)  # what train() lays out for fit
    train_spec = TrainSpec(epochs=3, batch_size=64, augment_shift=2, seed=4)
    result = kt.train(SMALL, train_spec, small, tmp_path, progress=False)
    assert laid_out == [0, 1, 2] and len(result.step_losses) == 30
    for epoch, step in [(0, 0), (2, 9)]:
        x, y = epoch_arrays(small.x_train, small.y_train, train_spec, epoch)
        xb, yb = x[step * 64 : (step + 1) * 64], y[step * 64 : (step + 1) * 64]  # fit's slice
        idx = epoch_batches(640, 64, seed=4, epoch=epoch)[step]
        np.testing.assert_array_equal(yb, small.y_train[idx])
        expected_x = augment_batch(small.x_train[idx], 2, 4, epoch, step)
        np.testing.assert_array_equal(xb, expected_x)
        assert not np.array_equal(xb, small.x_train[idx])  # the augmentation did something


@pytest.mark.parametrize("shift", [0, 2])
def test_an_epoch_laid_out_over_the_last_equals_a_fresh_one(
    small: Data, kt: ModuleType, shift: int
) -> None:
    train_spec = TrainSpec(batch_size=64, augment_shift=shift, seed=4)
    first = kt.epoch_arrays(small.x_train, small.y_train, train_spec, 0)
    kept = first[0].copy(), first[1].copy()
    second = kt.epoch_arrays(small.x_train, small.y_train, train_spec, 1, first)
    assert second[0] is first[0] and second[1] is first[1]  # the buffers were reused
    fresh = kt.epoch_arrays(small.x_train, small.y_train, train_spec, 1)
    np.testing.assert_array_equal(second[0], fresh[0])
    np.testing.assert_array_equal(second[1], fresh[1])
    assert not np.array_equal(kept[1], fresh[1])  # another epoch, another order


def test_cli_reports_user_errors(capsys, monkeypatch, kt: ModuleType) -> None:
    monkeypatch.delenv("KERAS_BACKEND", raising=False)  # restored afterwards: main() sets it
    monkeypatch.setitem(BACKENDS, "jax", "jax_is_not_installed_here")  # a missing backend
    assert main(["train", "--backend", "jax"]) == 2
    assert "needs the 'jax_is_not_installed_here' package" in capsys.readouterr().err
    assert main(["train", "--backend", "torch"]) == 2  # keras already runs TensorFlow here
    assert "fresh process" in capsys.readouterr().err
    assert main(["train", "--set", "conv.0.kernel_size=40"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("keras-cnn: error: ") and "layer conv1" in err
    assert "Traceback" not in err
    monkeypatch.setenv("KERAS_BACKEND", "numpy")  # a Keras backend this package does not run on
    assert main(["train"]) == 2
    assert "unsupported Keras backend 'numpy'" in capsys.readouterr().err


def test_resume_checks_the_spec_and_skips_finished_epochs(
    small: Data, tmp_path: Path, kt: ModuleType
) -> None:
    train_spec = TrainSpec(epochs=1, batch_size=64)
    first = kt.train(SMALL, train_spec, small, tmp_path, progress=False)
    other = TrainSpec(epochs=1, batch_size=64, learning_rate=0.01)
    with pytest.raises(UserError, match="another spec"):
        kt.train(SMALL, other, small, tmp_path, resume=True, progress=False)
    again = kt.train(SMALL, train_spec, small, tmp_path, resume=True, progress=False)
    assert again.extra["resumed_from_epoch"] == 1  # nothing left to train
    assert again.step_losses == first.step_losses and again.history == first.history
    assert again.test_loss == first.test_loss


def test_a_missing_gpu_is_a_user_error(kt: ModuleType) -> None:
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible")
    with pytest.raises(UserError, match="no GPU"):
        kt.device_scope("gpu")
    assert kt.device_scope("auto")[0] == "cpu"


def test_the_default_path_never_imports_torch(data_dir, tmp_path) -> None:
    done = run_python(
        f"""
        import json, sys
        import keras_cnn
        lazy = "keras" not in sys.modules and "tensorflow" not in sys.modules
        from keras_cnn.__main__ import main
        rc = main(["train", "--quiet", "--subset", "300", "--epochs", "1",
                   "--out", {str(tmp_path)!r}])
        print(json.dumps({{"rc": rc, "lazy": lazy, "torch": "torch" in sys.modules,
                          "tf": "tensorflow" in sys.modules}}))
        """
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"rc": 0, "lazy": True, "torch": False, "tf": True}


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_another_backend_trains_and_predicts(backend, data_dir, tmp_path) -> None:
    pytest.importorskip(backend)
    done = run_python(
        f"""
        import json, sys
        import numpy as np
        from keras_cnn.__main__ import main
        rc = main(["train", "--quiet", "--backend", {backend!r}, "--subset", "1000",
                   "--epochs", "2", "--init", "shared", "--out", {str(tmp_path)!r}])
        import keras, keras_cnn, numpy_cnn
        from cnn_common.data import prepare_data
        from cnn_common.results import RunResult
        from cnn_common.weights import load_weights
        weights, spec, _ = load_weights({str(tmp_path / WEIGHTS_FILE)!r})
        record = RunResult.from_json({str(tmp_path / RESULT_FILE)!r})
        data = prepare_data("mnist", download=False)
        x, y = data.x_test[:200], data.y_test[:200]
        model = keras_cnn.build(spec)
        keras_cnn.set_weights(model, weights)
        probs = keras_cnn.predict(model, x)
        loss, grads = keras_cnn.loss_and_grads(model, x[:64], y[:64])
        reference = numpy_cnn.build(spec)
        numpy_cnn.set_weights(reference, weights)
        ref_loss, ref_grads = numpy_cnn.loss_and_grads(reference, x[:64], y[:64])
        worst = max(np.linalg.norm(grads[k] - g) / np.linalg.norm(g) for k, g in ref_grads.items())
        # 'same' padding with an even kernel and stride 2: the odd pixel must go last here too
        from cnn_common.spec import ConvBlock, ModelSpec
        from cnn_common.weights import init_weights
        same = ModelSpec(input_shape=(13, 12, 1), conv=(ConvBlock(filters=3, kernel_size=4,
                         stride=2, padding="same"),), num_classes=4)
        same_weights = {{k: v + 0.01 for k, v in init_weights(same, seed=1).items()}}
        keras_same, numpy_same = keras_cnn.build(same), numpy_cnn.build(same)
        keras_cnn.set_weights(keras_same, same_weights)
        numpy_cnn.set_weights(numpy_same, same_weights)
        xs = np.random.default_rng(0).random((8, 13, 12, 1), dtype=np.float32)
        same_gap = np.abs(keras_cnn.predict_logits(keras_same, xs)
                          - numpy_cnn.predict_logits(numpy_same, xs)).max()
        # TorchAdam's update rule on this backend, in float64: three steps against numpy_cnn
        from cnn_common.spec import TrainSpec
        steps_spec = TrainSpec(dtype="float64")
        w64 = {{k: v.astype("float64") for k, v in same_weights.items()}}
        keras_steps = keras_cnn.build(same, "float64")
        numpy_steps = numpy_cnn.build(same, "float64")
        keras_cnn.set_weights(keras_steps, w64)
        numpy_cnn.set_weights(numpy_steps, w64)
        batches = [(xs.astype("float64"), np.arange(8) % 4)] * 3
        keras_cnn.train_steps(keras_steps, steps_spec, batches)
        numpy_cnn.train_steps(numpy_steps, steps_spec, batches)
        after = numpy_cnn.get_weights(numpy_steps)
        adam_gap = max(
            np.abs(v - after[k]).max() for k, v in keras_cnn.get_weights(keras_steps).items()
        )
        print(json.dumps({{
            "rc": rc, "backend": keras.backend.backend(), "record_backend": record.backend,
            "tf": "tensorflow" in sys.modules, "accuracy": record.test_accuracy,
            "same_predictions": probs.argmax(1).tolist() == record.predictions[:200],
            "steps": len(record.step_losses), "loss_gap": abs(loss - ref_loss),
            "worst_grad": float(worst), "same_gap": float(same_gap),
            "optimizer": record.extra["optimizer"], "adam_gap": float(adam_gap)}}))
        """,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["rc"] == 0 and report["backend"] == report["record_backend"] == backend
    assert report["tf"] is False  # TensorFlow stays out of a process on another backend
    assert report["accuracy"] > 0.5 and report["same_predictions"]  # 16 steps; chance is 0.1
    assert report["steps"] == 2 * 8
    assert report["loss_gap"] < 1e-5 and report["worst_grad"] < 1e-4
    assert report["same_gap"] < 1e-5
    assert report["optimizer"] == "TorchAdam" and report["adam_gap"] < 1e-7


@pytest.mark.slow
def test_default_run_reaches_98_5_percent_on_mnist(data_dir, tmp_path) -> None:
    """The seed model, 5 epochs, the full training set, through the CLI."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("KERAS_BACKEND", None)
    subprocess.run(cli("--out", str(tmp_path)), env=env, check=True, timeout=900)
    result = RunResult.from_json(tmp_path / RESULT_FILE)
    assert result.test_accuracy >= 0.985
    assert len(result.history) == 5 and len(result.step_losses) == 5 * 430
    assert result.backend == "tensorflow" and result.param_count == 46_730
    assert result.history[-1].val_accuracy >= 0.98
