"""lightning_cnn.training: bit-identity with the plain PyTorch loop (``pytorch_cnn.train``), the
run record, events, logs and checkpoints, resume without a checkpoint, and the accuracy of the
seed run. A NaN loss and resume after a SIGKILL are the contract suite's (tests/contract)."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")

import lightning_cnn as lc  # noqa: E402
import pytorch_cnn  # noqa: E402
from cnn_common.data import Data, subset  # noqa: E402
from cnn_common.events import End, Epoch, Event, Start, Step  # noqa: E402
from cnn_common.results import RESULT_FILE, WEIGHTS_FILE, RunResult  # noqa: E402
from cnn_common.spec import ConvBlock, DenseLayer, LayerSpec, ModelSpec, TrainSpec  # noqa: E402
from cnn_common.weights import init_weights, load_weights  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def assert_weights_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)  # safetensors files list their tensors sorted
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_a_full_mnist_epoch_is_bit_identical_to_the_plain_pytorch_loop(mnist: Data, tmp_path):
    """All 430 steps of epoch 1 on the 55,000 training images, from the same initial weights:
    ``lightning_cnn.train`` and ``pytorch_cnn.train`` take the same steps, bit for bit."""
    spec, train_spec = ModelSpec(), TrainSpec(epochs=1)
    weights = init_weights(spec, train_spec.seed)
    plain = pytorch_cnn.train(
        spec, train_spec, mnist, tmp_path / "plain", weights, progress=False, device="cpu"
    )
    result = lc.train(
        spec, train_spec, mnist, tmp_path / "lightning", weights, progress=False, device="cpu"
    )
    assert len(result.step_losses) == len(plain.step_losses) == 430
    assert result.init_digest == plain.init_digest
    diff = np.max(np.abs(np.subtract(result.step_losses, plain.step_losses)))
    assert diff <= 1e-6
    assert result.step_losses == plain.step_losses, f"close (max diff {diff}) but not identical"
    assert_weights_equal(
        load_weights(tmp_path / "lightning" / WEIGHTS_FILE)[0],
        load_weights(tmp_path / "plain" / WEIGHTS_FILE)[0],
    )


VARIANTS = {
    # PyTorch's own initialisers, drawn by both from the run seed's init stream
    "native-init": (ModelSpec(), TrainSpec(epochs=2, batch_size=64), False),
    # augmentation, dropout (re-seeded per epoch), Keras's epsilon placement, 'same' padding
    "augment-dropout-keras-adam": (
        ModelSpec(
            conv=(ConvBlock(filters=8, padding="same"), ConvBlock(filters=16, kernel_size=3)),
            dense=(DenseLayer(units=32, dropout=0.3),),
        ),
        TrainSpec(
            epochs=2,
            batch_size=100,
            augment_shift=2,
            epsilon=1e-7,
            epsilon_convention="keras",
            seed=3,
        ),
        True,
    ),
    "sgd-float64": (
        ModelSpec(),
        TrainSpec(epochs=1, optimizer="sgd", learning_rate=0.05, dtype="float64"),
        True,
    ),
    # the schedule's rate set before each update from its index in the run, both ways alike;
    # AdamW on the kernels only
    "adamw-on-kernels-cosine-per-step-after-a-warm-up": (
        ModelSpec(),
        TrainSpec(
            epochs=2,
            batch_size=100,
            weight_decay=0.05,
            weight_decay_convention="decoupled",
            weight_decay_on="kernels",
            lr_schedule="cosine",
            lr_interval="step",
            lr_warmup=3,
        ),
        True,
    ),
    # DecoupledSGD (which Lightning steps with a closure), the rate halved after epoch 1
    "decoupled-sgd-step-decay-per-epoch": (
        ModelSpec(),
        TrainSpec(
            epochs=2,
            batch_size=100,
            optimizer="sgd",
            momentum=0.9,
            learning_rate=0.05,
            weight_decay=0.01,
            weight_decay_convention="decoupled",
            lr_schedule="step",
            lr_gamma=0.5,
        ),
        True,
    ),
    # frozen layers (a conv, a batchnorm running as in evaluation, a residual block with its
    # projection, a dense layer) in no optimiser and out of the l2 decay on every weight
    "frozen-layers-l2-on-all": (
        ModelSpec(
            layers=(
                LayerSpec("conv", name="c1", filters=4, padding="same", trainable=False),
                LayerSpec("batchnorm", name="bn1", trainable=False, frozen_batchnorm="inference"),
                LayerSpec("activation", activation="relu"),
                LayerSpec("maxpool"),
                LayerSpec("residual", name="r1", filters=8, stride=2, trainable=False),
                LayerSpec("conv", name="c2", filters=8),
                LayerSpec("batchnorm", name="bn2"),
                LayerSpec("global_avgpool"),
                LayerSpec("dense", name="d1", units=16, activation="relu", trainable=False),
            )
        ),
        TrainSpec(epochs=1, batch_size=100, learning_rate=0.01, weight_decay=0.01),
        True,
    ),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_parity_with_the_plain_loop_holds_for_every_training_setting(
    variant: str, mnist: Data, tmp_path
) -> None:
    spec, train_spec, shared = VARIANTS[variant]
    data = subset(mnist, 1000, 100, 200)
    data = dataclasses.replace(data, x_train=data.x_train.astype(train_spec.dtype))
    weights = init_weights(spec, train_spec.seed, train_spec.dtype) if shared else None
    plain = pytorch_cnn.train(
        spec, train_spec, data, tmp_path / "plain", weights, progress=False, device="cpu"
    )
    result = lc.train(
        spec, train_spec, data, tmp_path / "lightning", weights, progress=False, device="cpu"
    )
    assert result.init == plain.init == ("shared" if shared else "native")
    assert result.init_digest == plain.init_digest  # the same initial weights, native too
    assert result.step_losses == plain.step_losses
    assert_weights_equal(
        load_weights(tmp_path / "lightning" / WEIGHTS_FILE)[0],
        load_weights(tmp_path / "plain" / WEIGHTS_FILE)[0],
    )


def test_the_run_record_events_and_files(mnist: Data, tmp_path, capfd) -> None:
    data = subset(mnist, 600)
    spec, train_spec = ModelSpec(), TrainSpec(epochs=2, batch_size=100)
    events: list[Event] = []
    result = lc.train(
        spec, train_spec, data, tmp_path, on_event=events.append, progress=False, device="cpu"
    )
    assert capfd.readouterr().out == ""  # progress=False prints nothing to stdout

    assert (result.framework, result.backend, result.init) == ("lightning", "torch", "native")
    assert result.device.startswith("cpu")
    assert result.sizes == {"train": 600, "val": 5000, "test": 10_000}
    assert {"torch", "lightning", "torchmetrics", "python"} <= set(result.versions)
    assert len(result.step_losses) == 2 * 6
    assert [h.epoch for h in result.history] == [1, 2]
    for h, losses in zip(
        result.history, (result.step_losses[:6], result.step_losses[6:]), strict=True
    ):
        assert h.train_loss == pytest.approx(np.mean(losses), rel=1e-12)
        assert h.time_s > 0 and 0 <= h.train_accuracy <= 1
    # validation numbers are those of the trained model on x_val
    model = lc.build(spec)
    lc.set_weights(model, load_weights(tmp_path / WEIGHTS_FILE)[0])
    val_loss, val_accuracy, _ = lc.evaluate(model, data.x_val, data.y_val)
    assert result.history[-1].val_loss == pytest.approx(val_loss, rel=1e-5)
    assert result.history[-1].val_accuracy == pytest.approx(val_accuracy, abs=1e-7)
    test_loss, test_accuracy, predictions = lc.evaluate(model, data.x_test, data.y_test)
    assert result.test_accuracy == pytest.approx(test_accuracy)
    assert result.predictions == predictions.tolist()
    assert np.sum(result.confusion_matrix) == len(data.y_test)

    kinds = [e.kind for e in events]
    assert kinds == ["start"] + (["step"] * 6 + ["epoch"]) * 2 + ["end"]
    assert events[0] == Start(framework="lightning", epochs=2, steps_per_epoch=6, start_epoch=0)
    steps = [e for e in events if isinstance(e, Step)]
    assert [(e.epoch, e.step, e.steps) for e in steps[:2]] == [(1, 1, 6), (1, 2, 6)]
    assert steps[5].loss == pytest.approx(result.history[0].train_loss)
    assert steps[5].accuracy == pytest.approx(result.history[0].train_accuracy)
    epochs = [e for e in events if isinstance(e, Epoch)]
    assert [e.val_loss for e in epochs] == [h.val_loss for h in result.history]
    assert isinstance(events[-1], End)
    assert events[-1].test_accuracy == pytest.approx(result.test_accuracy)
    # events cross process boundaries as JSON
    assert [Event.from_json(json.dumps(e.to_dict())) for e in events] == events

    assert RunResult.from_json(tmp_path / RESULT_FILE) == result
    checkpoints = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert checkpoints == ["epoch-0001.ckpt", "epoch-0002.ckpt"]  # named as every framework's
    assert (tmp_path / "csv_logs" / "version_0" / "metrics.csv").is_file()
    logged = (tmp_path / "csv_logs" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    # step rows are written every log_every_n_steps (50) steps: the CLI test covers them
    assert {"train_loss_epoch", "train_acc_epoch", "val_loss", "val_acc"} <= set(logged.split(","))
    with open(tmp_path / "csv_logs" / "version_0" / "metrics.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row["train_acc_epoch"]]
    # the logged epoch accuracy is micro-averaged: the recorder's correct / seen
    assert [float(row["train_acc_epoch"]) for row in rows] == pytest.approx(
        [h.train_accuracy for h in result.history], abs=1e-6
    )


def test_resume_without_a_checkpoint_starts_afresh(mnist: Data, tmp_path) -> None:
    data = subset(mnist, 300, 100, 100)
    result = lc.train(
        ModelSpec(),
        TrainSpec(epochs=1, batch_size=100),
        data,
        tmp_path,
        resume=True,
        progress=False,
    )
    assert len(result.step_losses) == 3
    assert "resumed_from_epoch" not in result.extra


def test_device_gpu_without_a_gpu_is_a_user_error(mnist: Data, tmp_path) -> None:
    from cnn_common.errors import UserError

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(UserError, match="no GPU"):
        lc.train(ModelSpec(), TrainSpec(epochs=1), subset(mnist, 100), tmp_path, device="gpu")


def test_importing_the_package_loads_neither_tensorflow_nor_keras(tmp_path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        import lightning_cnn, lightning_cnn.training, lightning_cnn.model, lightning_cnn.cli
        lightning_cnn.train, lightning_cnn.LitCNN, lightning_cnn.MNISTDataModule
        from lightning_cnn.callbacks import make_loggers
        for logger in make_loggers({str(tmp_path)!r}):  # TensorBoard would pull TensorFlow in
            logger.log_metrics({{"loss": 1.0}}, step=0)
            logger.finalize("success")
        loaded = [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")]
        print(loaded)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert proc.stdout.strip() == "[]"
    assert list((tmp_path / "tensorboard").glob("version_0/events.out.tfevents.*"))


@pytest.mark.slow
def test_the_seed_run_reaches_98_5_percent_on_mnist(mnist: Data, data_dir: Path, tmp_path):
    """The default 5 epochs on the full training set, as ``lightning-cnn train`` runs them."""
    env = {**os.environ, "CNN_DATA_DIR": str(data_dir)}
    proc = subprocess.run(
        [sys.executable, "-m", "lightning_cnn", "train", "--quiet", "--out", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = RunResult.from_json(tmp_path / RESULT_FILE)
    assert result.test_accuracy >= 0.985
    assert len(result.history) == 5 and len(result.step_losses) == 5 * 430
    assert result.history[-1].val_accuracy >= 0.98
    assert result.train_spec == dataclasses.asdict(TrainSpec())
