"""lightning_cnn.module: LitCNN's hyperparameters, metrics (micro accuracy) and checkpoints."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")
L = pytest.importorskip("lightning")

import lightning_cnn as lc  # noqa: E402
from cnn_common.data import Data  # noqa: E402
from cnn_common.spec import ConvBlock, DenseLayer, ModelSpec, TrainSpec, spec_to_dict  # noqa: E402
from pytorch_cnn.optim import KerasAdam  # noqa: E402

SMALL = ModelSpec(input_shape=(8, 8, 1), conv=(ConvBlock(filters=3, kernel_size=3),),
                  dense=(DenseLayer(units=6),), num_classes=3)  # fmt: skip


def quiet_trainer(**kwargs: object) -> L.Trainer:
    return L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                     enable_model_summary=False, enable_checkpointing=False,
                     use_distributed_sampler=False, **kwargs)  # fmt: skip


def imbalanced_data(n: int = 60) -> Data:
    rng = np.random.default_rng(0)
    x = rng.random((n, 8, 8, 1), dtype=np.float32)
    y = np.where(np.arange(n) < n * 0.8, 0, np.arange(n) % 3).astype(np.int64)  # mostly class 0
    return Data("tiny", x, y, x, y, x, y, ("a", "b", "c"))


def test_hyperparameters_are_plain_dicts_and_rebuild_the_module() -> None:
    train_spec = TrainSpec(learning_rate=0.01, epsilon_convention="keras")
    model = lc.LitCNN(SMALL, train_spec)
    assert model.hparams["model_spec"] == spec_to_dict(SMALL)["model"]
    assert model.hparams["train_spec"] == dataclasses.asdict(train_spec)
    again = lc.LitCNN(**model.hparams)
    assert again.model_spec == SMALL and again.train_spec == train_spec
    assert isinstance(again.configure_optimizers(), KerasAdam)


def test_forward_gives_logits_of_nchw_images() -> None:
    model = lc.LitCNN(SMALL)
    logits = model(torch.rand(5, 1, 8, 8))
    assert logits.shape == (5, 3)
    assert not torch.allclose(logits.softmax(1).sum(1), logits.sum(1))  # not probabilities


def test_logged_accuracy_is_micro_averaged_not_the_torchmetrics_default() -> None:
    data = imbalanced_data()
    model = lc.LitCNN(SMALL)
    module = lc.MNISTDataModule.from_data(data, TrainSpec(validation_size=0), eval_batch_size=16)
    metrics = quiet_trainer().validate(model, datamodule=module)[0]
    _, micro, predictions = lc.evaluate(model, data.x_val, data.y_val)
    recalls = [np.mean(predictions[data.y_val == k] == k) for k in range(3)]
    assert metrics["val_acc"] == pytest.approx(micro, abs=1e-6)
    assert abs(micro - np.mean(recalls)) > 0.05  # the macro average is another number


def test_test_stage_keeps_the_confusion_matrix() -> None:
    data = imbalanced_data()
    model = lc.LitCNN(SMALL)
    module = lc.MNISTDataModule.from_data(data, TrainSpec(validation_size=0), eval_batch_size=16)
    metrics = quiet_trainer().test(model, datamodule=module)[0]
    _, accuracy, predictions = lc.evaluate(model, data.x_test, data.y_test)
    expected = np.zeros((3, 3), np.int64)
    np.add.at(expected, (data.y_test, predictions), 1)
    np.testing.assert_array_equal(model.test_confusion.numpy(), expected)
    assert metrics["test_acc"] == pytest.approx(accuracy, abs=1e-6)


def test_step_values_are_logged_on_the_steps_the_trainer_writes(tmp_path) -> None:
    from lightning.pytorch.loggers import CSVLogger

    data = imbalanced_data(64)
    module = lc.MNISTDataModule.from_data(data, TrainSpec(batch_size=8, validation_size=0))
    trainer = L.Trainer(accelerator="cpu", max_epochs=2, log_every_n_steps=3,
                        logger=CSVLogger(tmp_path), enable_progress_bar=False,
                        enable_checkpointing=False, use_distributed_sampler=False)  # fmt: skip
    trainer.fit(lc.LitCNN(SMALL), datamodule=module)
    import csv

    with open(tmp_path / "lightning_logs" / "version_0" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    steps = [int(row["step"]) for row in rows if row["train_loss_step"]]
    assert steps == [2, 5, 8, 11, 14]  # every third of the 16 steps
    epochs = [row for row in rows if row["train_loss_epoch"]]
    assert len(epochs) == 2


def test_native_weights_are_the_plain_networks_of_the_run_seed() -> None:
    """LitCNN initialises as ``pytorch_cnn.build`` does, from the ``init`` stream of its train
    seed: the global torch generator (which Lightning's seed_everything sets) plays no part."""
    import pytorch_cnn

    torch.manual_seed(123)
    a = lc.LitCNN(SMALL, TrainSpec(seed=4))
    torch.manual_seed(456)
    b = lc.LitCNN(SMALL, TrainSpec(seed=4))
    expected = pytorch_cnn.get_weights(pytorch_cnn.build(SMALL, seed=4))
    for name, value in expected.items():
        np.testing.assert_array_equal(lc.get_weights(a)[name], value, err_msg=name)
        np.testing.assert_array_equal(lc.get_weights(b)[name], value, err_msg=name)
    other = lc.get_weights(lc.LitCNN(SMALL, TrainSpec(seed=5)))
    assert not np.array_equal(other["conv1.kernel"], expected["conv1.kernel"])


def test_to_onnx_needs_no_input_sample(tmp_path) -> None:
    """`LitCNN.to_onnx(path)` exports from `example_input_array` (one image in the network's
    layout and dtype); given a batch of its own, it exports that. onnxruntime's logits match
    the module's. Needs the `onnx` extra (onnxscript: PyTorch's exporter imports it). Float32:
    onnxruntime's CPU provider has no float64 Conv."""
    onnxruntime = pytest.importorskip("onnxruntime")
    model = lc.LitCNN(SMALL, TrainSpec(seed=1)).eval()
    assert tuple(model.example_input_array.shape) == (1, 1, 8, 8)
    assert lc.LitCNN(SMALL, TrainSpec(dtype="float64")).example_input_array.dtype == torch.float64
    rng = np.random.default_rng(0)
    for sample, images in ((None, 1), (torch.rand(4, 1, 8, 8), 4)):
        path = tmp_path / f"lit-{images}.onnx"
        model.to_onnx(path) if sample is None else model.to_onnx(path, sample)
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        x = rng.random((images, 1, 8, 8), dtype=np.float32)
        (got,) = session.run(None, {session.get_inputs()[0].name: x})
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
