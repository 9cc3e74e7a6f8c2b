"""The lightning-cnn command line: LightningCLI defaults, fit/validate/test/predict, resume,
user errors, and DDP on two CPU processes."""

from __future__ import annotations

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
yaml = pytest.importorskip("yaml")

import lightning_cnn as lc  # noqa: E402
import pytorch_cnn  # noqa: E402
from cnn_common import memory  # noqa: E402
from cnn_common.batches import epoch_batches, shard_batches  # noqa: E402
from cnn_common.data import prepare_data, subset  # noqa: E402
from cnn_common.results import WEIGHTS_FILE  # noqa: E402
from cnn_common.spec import ModelSpec, TrainSpec, spec_to_dict  # noqa: E402
from cnn_common.weights import load_weights  # noqa: E402
from lightning_cnn.__main__ import main  # noqa: E402
from lightning_cnn.cli import cli_main  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def quick_args(root: Path, data_dir: Path, *extra: str) -> list[str]:
    return [
        "--data.subset", "1000", "--data.data_dir", str(data_dir),
        "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.accelerator", "cpu", *extra,
    ]  # fmt: skip


def test_print_config_shows_the_seed_run(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--print_config"])
    assert exit_info.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["model_spec"] == spec_to_dict(ModelSpec())["model"]
    assert config["model"]["train_spec"] == dataclasses.asdict(TrainSpec())
    assert config["data"]["dataset"] == "mnist"
    # batch size, seed, split, augmentation, dtype and epochs are linked to the train spec
    assert not {"batch_size", "seed", "validation_size", "dtype"} & set(config["data"])
    assert "max_epochs" not in config["trainer"]
    assert config["trainer"]["use_distributed_sampler"] is False
    assert config["trainer"]["accelerator"] == "auto"
    assert config["checkpoint"]["save_last"] is True
    assert config["seed_everything"] == 0


def test_fit_with_the_defaults_trains_as_train_does(tmp_path: Path, data_dir: Path) -> None:
    """The CLI's seed run (native init, seed 0) ends with train()'s weights, on a subset.

    Both start from the native weights of the run seed's ``init`` stream
    (``pytorch_cnn.model.build``), which the CLI's ``seed_everything`` does not touch: a CLI
    run with another ``seed_everything`` starts from the same weights."""
    cli = cli_main(
        ["fit", *quick_args(tmp_path / "cli", data_dir, "--model.train_spec.epochs", "1")]
    )
    data = subset(prepare_data("mnist", root=data_dir, download=False), 1000)
    lc.train(
        ModelSpec(), TrainSpec(epochs=1), data, tmp_path / "train", progress=False, device="cpu"
    )
    expected = load_weights(tmp_path / "train" / WEIGHTS_FILE)[0]
    trained = lc.get_weights(cli.model)
    for key, value in expected.items():
        np.testing.assert_array_equal(trained[key], value, err_msg=key)
    # the initial weights are the run seed's, whatever seed_everything says
    other = cli_main(
        ["fit", *quick_args(tmp_path / "other", data_dir, "--model.train_spec.epochs", "1"),
         "--seed_everything", "7", "--trainer.max_steps", "0"]
    )  # fmt: skip
    native = pytorch_cnn.get_weights(pytorch_cnn.build(ModelSpec(), seed=TrainSpec().seed))
    for key, value in native.items():
        np.testing.assert_array_equal(lc.get_weights(other.model)[key], value, err_msg=key)


def test_fit_resume_validate_test_and_predict(tmp_path: Path, data_dir: Path) -> None:
    root = tmp_path / "run"
    cli_main(
        [
            "fit",
            *quick_args(
                root, data_dir, "--model.train_spec.epochs", "1", "--trainer.log_every_n_steps", "1"
            ),
        ]
    )
    checkpoints = root / "checkpoints"
    assert (checkpoints / "last.ckpt").is_file()
    metrics = (root / "csv_logs" / "version_0" / "metrics.csv").read_text().splitlines()
    assert {"train_loss_step", "train_acc_step", "train_loss_epoch", "val_acc"} <= set(
        metrics[0].split(",")
    )
    assert len(metrics) > 8  # a row per step (8 steps) and per epoch

    # a second fit in the same folder: config.yaml is overwritten, training resumes at epoch 2
    cli = cli_main(
        [
            "fit",
            *quick_args(root, data_dir, "--model.train_spec.epochs", "2", "--ckpt_path", "last"),
        ]
    )
    assert cli.trainer.current_epoch == 2 and cli.trainer.global_step == 16
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch=1-step=16.ckpt", "last.ckpt"]

    cli = cli_main(["validate", *quick_args(root, data_dir, "--ckpt_path", "last")])
    val_accuracy = float(cli.trainer.callback_metrics["val_acc"])
    model = lc.load(checkpoints / "last.ckpt")
    data = subset(prepare_data("mnist", root=data_dir, download=False), 1000)
    assert val_accuracy == pytest.approx(lc.evaluate(model, data.x_val, data.y_val)[1], abs=1e-7)

    cli = cli_main(["test", *quick_args(root, data_dir, "--ckpt_path", "last")])
    _, test_accuracy, predictions = lc.evaluate(model, data.x_test, data.y_test)
    assert float(cli.trainer.callback_metrics["test_acc"]) == pytest.approx(test_accuracy)
    confusion = cli.model.test_confusion.numpy()
    assert confusion.sum() == len(data.y_test)
    np.testing.assert_array_equal(np.diag(confusion).sum(), np.sum(predictions == data.y_test))

    cli_main(["predict", *quick_args(root, data_dir, "--ckpt_path", "last")])
    written = np.load(root / "predictions.npz")
    np.testing.assert_array_equal(written["predictions"], predictions)
    np.testing.assert_allclose(
        written["probabilities"], lc.predict(model, data.x_test), rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fit", "--model.model_spec.conv=[{filters: 0}]"], "conv[0].filters must be"),
        (["fit", "--data.dataset", "nope"], "unknown dataset 'nope'"),
        (["train", "--set", "conv.0.kernel_size=40"], "does not fit"),
    ],
)
def test_user_errors_exit_2_with_the_fix_and_no_traceback(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "lightning-cnn: error: " in err and message in err and "fix:" in err
    assert "Traceback" not in err


def test_fit_refuses_a_spec_that_cannot_fit_before_it_reads_the_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memory, "available_memory", lambda *_: 8 * 1024**3)
    huge = "--model.model_spec.conv=[{filters: 200000}, {filters: 64}]"
    root = tmp_path / "run"
    args = ["fit", huge, "--data.data_dir", str(tmp_path / "no-data"), "--trainer.accelerator"]
    assert main([*args, "cpu", "--trainer.default_root_dir", str(root)]) == 2
    err = capsys.readouterr().err
    assert "lightning-cnn: error: lightning training needs about " in err
    assert "activations" in err and "more than the 8.0 GiB" in err and "fix: " in err
    assert "Traceback" not in err and not (root / "checkpoints").exists()


def test_fit_shows_its_memory_estimate(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layers = "[{kind: conv, filters: 4, kernel_size: 3}, {kind: batchnorm}, {kind: flatten}]"
    args = quick_args(tmp_path / "run", data_dir, "--trainer.max_steps", "1")
    cli_main(["fit", *args, f"--model.model_spec.layers={layers}", "--trainer.limit_val_batches=1"])
    line = next(x for x in capsys.readouterr().out.splitlines() if "memory (estimate)" in x)
    assert line.startswith("lightning-cnn: memory (estimate) ") and "available" in line


def test_an_unknown_dataset_for_train_is_refused_by_its_choices(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``train --dataset`` lists the registry's datasets as its choices, so argparse refuses
    an unknown one (exit 2, usage, no traceback) before anything is loaded."""
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--dataset", "nope"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "lightning-cnn train: error: " in err and "invalid choice: 'nope'" in err
    assert "fashion-mnist" in err and "Traceback" not in err


BATCH_LOG = textwrap.dedent(
    """
    import json
    from pathlib import Path

    import lightning as L


    class BatchLog(L.Callback):
        '''Writes the labels and pixel sum of every training batch this process saw.'''

        def __init__(self, out_dir: str) -> None:
            self.out_dir = out_dir
            self.seen = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            x, y = batch
            self.seen.append({"labels": y.tolist(), "x_sum": float(x.double().sum())})

        def on_train_end(self, trainer, pl_module):
            path = Path(self.out_dir, f"rank{trainer.global_rank}.json")
            path.write_text(json.dumps({"world": trainer.world_size, "seen": self.seen}))
    """
)


def test_ddp_on_two_cpu_processes_gives_each_its_own_batches(tmp_path: Path, data_dir: Path):
    (tmp_path / "batch_log.py").write_text(BATCH_LOG)
    config = {
        "trainer": {
            "callbacks": [
                {"class_path": "batch_log.BatchLog", "init_args": {"out_dir": str(tmp_path)}}
            ]
        }
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]),
        "OMP_NUM_THREADS": "1",
    }
    command = [
        sys.executable, "-m", "lightning_cnn", "fit", "--config", str(tmp_path / "config.yaml"),
        "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
        "--model.train_spec.epochs", "1", *quick_args(tmp_path / "run", data_dir),
    ]  # fmt: skip
    proc = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()

    data = subset(prepare_data("mnist", root=data_dir, download=False), 1000)
    batches = epoch_batches(1000, 128, 0, 0)  # 8 batches: 4 per process, none repeated
    seen = {}
    for rank in (0, 1):
        log = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert log["world"] == 2
        expected = shard_batches(batches, rank, 2)
        assert [s["labels"] for s in log["seen"]] == [data.y_train[i].tolist() for i in expected]
        sums = [s["x_sum"] for s in log["seen"]]
        np.testing.assert_allclose(
            sums, [data.x_train[i].astype(np.float64).sum() for i in expected], rtol=1e-6
        )
        seen[rank] = {int(i) for idx in expected for i in idx}
    assert not seen[0] & seen[1]  # each process trained on different images
    assert seen[0] | seen[1] == set(range(1000))  # and together on the whole epoch
