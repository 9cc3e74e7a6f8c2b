"""cnn_common.transfer: a trained run's matching layers in a new spec's starting weights, the
plan it reports, its refusals (each naming the layers), and how the trainers record it."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cnn_common.cli import add_trainer_command, init_from_args, train_from_args
from cnn_common.errors import UserError
from cnn_common.recorder import RunRecorder
from cnn_common.results import RESULT_FILE, WEIGHTS_FILE, RunResult
from cnn_common.spec import ModelSpec, TrainSpec, layers
from cnn_common.spec_files import load_spec
from cnn_common.trainer import TrainingRun
from cnn_common.transfer import TransferWeights, transfer_weights
from cnn_common.weights import Weights, init_weights, save_weights
from tests.bad_input_setups import entry_point
from tests.cnn_common.test_trainer import ONE_PROCESS, tiny_data

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BASE, BASE_TRAIN = load_spec(EXAMPLES / "resnet_small.yaml")
NEW, NEW_TRAIN = load_spec(EXAMPLES / "resnet_small_transfer.yaml")
BASE_LAYERS = [layer.name for layer in layers(BASE) if layer.tensors and layer.name != "logits"]


def trained(spec: ModelSpec, seed: int = 7, dtype: str = "float64") -> Weights:
    """Weights of ``spec`` as a trained run leaves them: nothing at its initial value, the
    batchnorm statistics included."""
    rng = np.random.default_rng(seed)
    return {
        name: (value + rng.uniform(0.5, 1.5, value.shape)).astype(dtype)
        for name, value in init_weights(spec, seed, dtype).items()
    }


def run_folder(folder: Path, spec: ModelSpec = BASE, train: TrainSpec = BASE_TRAIN) -> Weights:
    """A finished run's folder: its weights and, beside them, its record."""
    weights = trained(spec)
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(folder / WEIGHTS_FILE, weights, spec, train)
    RunResult("numpy", "numpy", "mnist", {}, {}, "shared", "cpu", {}, 0).to_json(
        folder / RESULT_FILE
    )
    return weights


def refusal(spec: ModelSpec, run: Path, train: TrainSpec = NEW_TRAIN) -> UserError:
    with pytest.raises(UserError) as info:
        transfer_weights(spec, train, run)
    return info.value


def replace_layer(spec: ModelSpec, index: int, **changes: Any) -> ModelSpec:
    items = list(spec.layers)
    items[index] = dataclasses.replace(items[index], **changes)
    return dataclasses.replace(spec, layers=tuple(items))


# ----------------------------------------------------------------------------- loading


def test_matching_layers_come_from_the_run_with_their_statistics_in_the_new_dtype(
    tmp_path: Path,
) -> None:
    source = run_folder(tmp_path / "mnist")  # float64, every value away from its initial one
    start = transfer_weights(NEW, dataclasses.replace(NEW_TRAIN, seed=3), tmp_path / "mnist")
    assert isinstance(start, TransferWeights)
    fresh = init_weights(NEW, 3, "float32")
    assert list(start) == list(fresh)  # every tensor of the new spec, in its order
    for name, value in start.items():
        assert value.dtype == np.float32, name
        layer = name.split(".")[0]
        expected = source[name].astype(np.float32) if layer in BASE_LAYERS else fresh[name]
        np.testing.assert_array_equal(value, expected, err_msg=name)
    # the running statistics travel with the layer: not the fresh zeros and ones
    assert np.all(start["stage2_bn1.moving_mean"] > 0.4)
    assert np.all(start["stage2_projbn.moving_variance"] > 1.4)
    plan = start.plan
    assert plan.source == str((tmp_path / "mnist" / WEIGHTS_FILE).resolve())
    assert plan.about == "numpy on mnist"
    assert list(plan.loaded) == BASE_LAYERS and list(plan.frozen) == BASE_LAYERS
    assert (plan.fresh, plan.dropped) == (("head", "logits"), ("logits",))
    assert plan.describe() == (
        f"starting weights from {plan.source} (numpy on mnist): 18 layers loaded, 2 fresh "
        "(head, logits), 18 frozen; left out of the run: logits"
    )


def test_a_weight_file_a_float64_run_and_another_seed(tmp_path: Path) -> None:
    source = run_folder(tmp_path / "run")
    train = dataclasses.replace(NEW_TRAIN, dtype="float64", seed=5)
    start = transfer_weights(NEW, train, tmp_path / "run" / WEIGHTS_FILE)
    np.testing.assert_array_equal(start["stem.kernel"], source["stem.kernel"])
    assert start["stem.kernel"].dtype == np.float64
    np.testing.assert_array_equal(
        start["head.kernel"], init_weights(NEW, 5, "float64")["head.kernel"]
    )


def test_the_same_spec_loads_everything_but_the_classifier(tmp_path: Path) -> None:
    source = run_folder(tmp_path / "run", ModelSpec(), TrainSpec())
    start = transfer_weights(ModelSpec(), TrainSpec(), tmp_path / "run")
    assert start.plan.loaded == ("conv1", "conv2", "dense1")
    assert start.plan.fresh == start.plan.dropped == ("logits",)
    assert start.plan.frozen == ()
    np.testing.assert_array_equal(start["dense1.bias"], source["dense1.bias"].astype(np.float32))
    np.testing.assert_array_equal(
        start["logits.kernel"], init_weights(ModelSpec())["logits.kernel"]
    )


# ----------------------------------------------------------------------------- refusals


def test_a_missing_run(tmp_path: Path) -> None:
    error = refusal(NEW, tmp_path / "nothere")
    assert error.message == f"--init-from {tmp_path / 'nothere'}: no such run folder or weight file"
    assert "a finished run's folder (one holding weights.safetensors" in error.hint


def test_a_folder_without_weights_and_a_folder_of_runs(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    error = refusal(NEW, tmp_path / "empty")
    assert "holds no weights.safetensors (a run that has not finished?)" in error.message
    assert "--resume" in error.hint
    run_folder(tmp_path / "out" / "runs" / "numpy-seed0")
    run_folder(tmp_path / "out" / "runs" / "pytorch-seed0")
    error = refusal(NEW, tmp_path / "out")
    assert f"--init-from {tmp_path / 'out'} holds 2 runs, not one: " in error.message
    assert str(tmp_path / "out" / "runs" / "pytorch-seed0") in error.message


def test_an_unreadable_weight_file(tmp_path: Path) -> None:
    run_folder(tmp_path / "run")
    path = tmp_path / "run" / WEIGHTS_FILE
    path.write_bytes(path.read_bytes()[:200])
    error = refusal(NEW, path)
    assert error.message.startswith(f"--init-from {path}: {path} is not a readable safetensors")


def test_layers_of_another_shape_are_named_one_by_one(tmp_path: Path) -> None:
    run_folder(tmp_path / "run")
    wider = replace_layer(NEW, 0, filters=8)  # the stem: 8 filters against the run's 16
    error = refusal(wider, tmp_path / "run")
    assert "layers of this spec differ from the run's layers of the same name:" in error.message
    for line in (
        "stem.kernel: the run's (3, 3, 1, 16), this spec's (3, 3, 1, 8)",
        "stem_bn.gamma: the run's (16,), this spec's (8,)",
        "stem_bn.moving_mean: the run's (16,), this spec's (8,)",
        "stage1_conv1.kernel: the run's (3, 3, 16, 16), this spec's (3, 3, 8, 16)",
    ):
        assert f"\n    {line}" in error.message, line
    assert "stage2" not in error.message  # the layers that match are not named
    assert "rename a layer that changes" in error.hint


def test_a_layer_that_gained_a_tensor_is_a_mismatch(tmp_path: Path) -> None:
    run_folder(tmp_path / "run")
    error = refusal(replace_layer(NEW, 0, bias=True), tmp_path / "run")
    assert "stem.bias: this spec has it, the run's stem has not" in error.message


def test_a_run_with_nothing_in_common(tmp_path: Path) -> None:
    run_folder(tmp_path / "seed", ModelSpec(), TrainSpec())
    error = refusal(NEW, tmp_path / "seed")
    assert "no layer of this spec is in the run (logits always starts fresh)" in error.message
    assert "the run has conv1, conv2, dense1, this spec stem, stem_bn," in error.message


def test_a_frozen_layer_the_run_does_not_have(tmp_path: Path) -> None:
    run_folder(tmp_path / "run")
    frozen_head = replace_layer(NEW, len(NEW.layers) - 1, trainable=False)
    error = refusal(frozen_head, tmp_path / "run")
    assert error.message.endswith(
        "frozen layers (trainable: false) get no weights from the run and would keep random "
        "ones: head"
    )
    assert "drop trainable: false" in error.hint


# ----------------------------------------------------------------------------- the record


def test_the_trainers_record_a_transfer_and_its_source(tmp_path: Path) -> None:
    run_folder(tmp_path / "run")
    start = transfer_weights(NEW, NEW_TRAIN, tmp_path / "run")
    run = TrainingRun(ONE_PROCESS, tmp_path / "new", start)
    assert (run.init, run.init_from) == ("transfer", start.plan.source)
    recorder = run.recorder(NEW, NEW_TRAIN, tiny_data(), None, False)
    assert (recorder.init, recorder.init_from) == ("transfer", start.plan.source)
    # a resumed run keeps them from its checkpoint's state
    again = RunRecorder("demo", NEW, NEW_TRAIN, tiny_data(), tmp_path / "new", init="shared")
    again.restore(recorder.state())
    assert (again.init, again.init_from) == ("transfer", start.plan.source)
    plain = TrainingRun(ONE_PROCESS, tmp_path / "new", dict(start))
    assert (plain.init, plain.init_from) == ("shared", "")


def test_records_written_before_transfers_still_read(tmp_path: Path) -> None:
    record = RunResult("numpy", "numpy", "mnist", {}, {}, "shared", "cpu", {}, 0).to_dict()
    del record["init_from"]
    assert RunResult.from_dict(record).init_from == ""


# ----------------------------------------------------------------------------- the trainers' flag


class FakeTrain:
    """A framework's ``train`` that only keeps what it was given."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, model, train, data, out, **kwargs) -> RunResult:  # noqa: ANN001
        self.calls.append({"model": model, "out": out, **kwargs})
        return RunResult("numpy", "numpy", "mnist", {}, {}, "transfer", "cpu", {}, 0)


def parse_train(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="numpy-cnn")
    add_trainer_command(parser.add_subparsers(dest="command", required=True), "numpy", "it")
    return parser.parse_args(["train", *argv])


def test_the_trainers_flag_gives_train_the_weights_and_says_so(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_folder(tmp_path / "mnist")
    spec = str(EXAMPLES / "resnet_small_transfer.yaml")
    argv = ["--spec", spec, "--init-from", str(tmp_path / "mnist"), "--out", str(tmp_path / "o")]
    argv += ["--data-dir", str(data_dir), "--subset", "64", "--dataset", "fashion-mnist"]
    fake = FakeTrain()
    train_from_args(parse_train(argv), fake)
    (call,) = fake.calls
    assert isinstance(call["init_weights"], TransferWeights)
    assert call["init_weights"].plan.loaded == tuple(BASE_LAYERS)
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("starting weights from ") and "18 layers loaded" in first


def test_the_trainers_refuse_a_bad_run_before_the_data(tmp_path: Path) -> None:
    args = parse_train(["--init-from", str(tmp_path / "nothere"), "--out", str(tmp_path / "o")])
    args.data_dir = str(tmp_path / "no-data")  # the data would fail next: it is never read
    fake = FakeTrain()
    with pytest.raises(UserError, match="no such run folder or weight file"):
        train_from_args(args, fake)
    assert fake.calls == [] and not (tmp_path / "o").exists()
    assert init_from_args(parse_train(["--init", "shared"]), NEW, NEW_TRAIN) is not None


@pytest.mark.parametrize("trainer", ["numpy-cnn", "pytorch-cnn"])
def test_a_trainer_refuses_an_incompatible_run_with_exit_2(tmp_path: Path, trainer: str) -> None:
    run_folder(tmp_path / "seed", ModelSpec(), TrainSpec())
    out = tmp_path / "o"
    command = [*entry_point(trainer), "train", "--spec", str(EXAMPLES / "resnet_small.yaml")]
    command += ["--init-from", str(tmp_path / "seed"), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert (
        f"{trainer}: error: --init-from {tmp_path / 'seed'}: no layer of this spec" in done.stderr
    )
    assert "fix: give a run of a spec that shares layers" in done.stderr
    assert "Traceback" not in done.stderr and not out.exists()
