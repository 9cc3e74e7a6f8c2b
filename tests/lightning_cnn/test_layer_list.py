"""lightning_cnn on a layer list with batchnorm and a residual block: the Trainer's training
steps update the running statistics exactly as the plain PyTorch loop does, validation runs in
evaluation mode and leaves them, they travel through Lightning checkpoints and resume, and the
command line prints, reads and fits a layer list."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")
L = pytest.importorskip("lightning")

import lightning_cnn as lc  # noqa: E402
import pytorch_cnn  # noqa: E402
from cnn_common.data import Data  # noqa: E402
from cnn_common.results import WEIGHTS_FILE  # noqa: E402
from cnn_common.spec import LayerSpec, ModelSpec, TrainSpec, spec_from_dict, spec_to_dict  # noqa: E402
from cnn_common.weights import init_weights, load_weights  # noqa: E402
from lightning_cnn.cli import cli_main  # noqa: E402

# A conv, a Keras-convention batchnorm storing the biased variance, a residual block (torch
# convention, unbiased) and global average pooling, on 8x8 images.
SPEC = ModelSpec(
    input_shape=(8, 8, 1),
    num_classes=3,
    layers=(
        LayerSpec("conv", filters=4, kernel_size=3, padding="same", bias=False),
        LayerSpec("batchnorm", momentum=0.9, momentum_convention="keras", variance="biased"),
        LayerSpec("activation", activation="relu"),
        LayerSpec("residual", filters=4),
        LayerSpec("global_avgpool"),
    ),
)
TRAIN = TrainSpec(batch_size=16, epochs=2, learning_rate=0.01)


def tiny_data() -> Data:
    rng = np.random.default_rng(0)
    x = rng.random((48, *SPEC.input_shape), dtype=np.float32)
    y = rng.integers(0, 3, 48)
    return Data("random", x, y, x[:16], y[:16], x[16:32], y[16:32], ("a", "b", "c"))


def running(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v for k, v in lc.get_weights(model).items() if ".moving_" in k}


def assert_weights_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert list(a) == list(b)
    for key, value in a.items():
        np.testing.assert_array_equal(value, b[key], err_msg=key)


def test_fit_steps_as_the_plain_loop_validates_in_evaluation_mode_and_resumes(
    tmp_path: Path,
) -> None:
    data, weights = tiny_data(), init_weights(SPEC)
    kwargs = {"init_weights": weights, "progress": False, "device": "cpu"}
    plain = pytorch_cnn.train(SPEC, TRAIN, data, tmp_path / "plain", **kwargs)
    lit = lc.train(SPEC, TRAIN, data, tmp_path / "lit", **kwargs)
    assert lit.step_losses == plain.step_losses
    trained = load_weights(tmp_path / "lit" / WEIGHTS_FILE)[0]
    assert_weights_equal(trained, load_weights(tmp_path / "plain" / WEIGHTS_FILE)[0])
    for name, value in trained.items():
        if ".moving_" in name:
            assert not np.allclose(value, weights[name]), name
    # the last validation saw the trained network in evaluation mode (running statistics)
    model = lc.build(SPEC)
    lc.set_weights(model, trained)
    val_loss, val_acc, _ = lc.evaluate(model, data.x_val, data.y_val)
    assert lit.history[-1].val_loss == pytest.approx(val_loss, abs=1e-5)
    assert lit.history[-1].val_accuracy == pytest.approx(val_acc, abs=1e-6)
    # one epoch, then resumed to two: the same running statistics and weights
    one = dataclasses.replace(TRAIN, epochs=1)
    lc.train(SPEC, one, data, tmp_path / "resumed", **kwargs)
    resumed = lc.train(SPEC, TRAIN, data, tmp_path / "resumed", resume=True, **kwargs)
    assert resumed.extra["resumed_from_epoch"] == 1
    assert_weights_equal(load_weights(tmp_path / "resumed" / WEIGHTS_FILE)[0], trained)


def test_validation_leaves_the_running_statistics() -> None:
    data = tiny_data()
    model = lc.LitCNN(SPEC, TRAIN)
    before = running(model)
    module = lc.ImageDataModule.from_data(data, TRAIN, eval_batch_size=16)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False,
                        use_distributed_sampler=False)  # fmt: skip
    metrics = trainer.validate(model, datamodule=module)[0]
    assert_weights_equal(running(model), before)
    assert metrics["val_loss"] == pytest.approx(lc.evaluate(model, data.x_val, data.y_val)[0])


@pytest.mark.parametrize("held", ["LitCNN", "CNN"])
def test_a_lightning_checkpoint_keeps_the_running_statistics(tmp_path: Path, held: str) -> None:
    model = lc.build(SPEC, "float64")
    x = tiny_data().x_train[:16]
    lc.train_steps(model, TrainSpec(dtype="float64"), [(x, np.arange(16) % 3)])
    expected = lc.get_weights(model)
    path = tmp_path / "model.ckpt"
    lc.save(model if held == "LitCNN" else model.model, path)
    loaded = lc.load(path)
    assert_weights_equal(lc.get_weights(loaded), expected)
    np.testing.assert_array_equal(lc.predict_logits(loaded, x), lc.predict_logits(model, x))


LAYERS = "[{kind: conv, filters: 4, bias: false}, {kind: batchnorm, momentum: 0.99, momentum_convention: keras}, {kind: residual, filters: 8, stride: 2}, {kind: global_avgpool}]"  # noqa: E501


def test_the_cli_prints_reads_and_fits_a_layer_list(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, data_dir: Path
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--print_config", f"--model.model_spec.layers={LAYERS}"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)["model"]["model_spec"]
    spec = spec_from_dict({"model": printed})[0]
    assert printed == spec_to_dict(spec)["model"]  # the layer list alone, as a spec file
    kinds = ["conv", "batchnorm", "residual", "global_avgpool"]
    assert [layer.kind for layer in spec.layers] == kinds
    cli = cli_main(
        ["fit", f"--model.model_spec.layers={LAYERS}", "--trainer.max_steps", "2",
         "--data.subset", "64", "--model.train_spec.batch_size", "32",
         "--data.data_dir", str(data_dir),
         "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
         "--trainer.enable_model_summary", "false", "--trainer.accelerator", "cpu",
         "--trainer.limit_val_batches", "1"]
    )  # fmt: skip
    assert cli.model.model_spec == spec
    assert not np.allclose(running(cli.model)["bn1.moving_mean"], 0.0)
