"""cnn_common.cli and cnn_common.errors: the shared flags, the ``train`` subcommand every
trainer shares, and the user-error exit."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from cnn_common.cli import (
    add_train_arguments,
    add_trainer_command,
    data_from_args,
    init_from_args,
    run_train_command,
    specs_from_args,
    train_from_args,
    trainer_command_line,
)
from cnn_common.errors import (
    EXIT_USER_ERROR,
    DataError,
    FrameworkMissingError,
    SpecError,
    UserError,
    run_cli,
)
from cnn_common.framework import EXIT_STATUSES, TOPICS, FrameworkInfo
from cnn_common.results import RESULT_FILE, RunResult
from cnn_common.spec import ConvBlock, ModelSpec, TrainSpec
from cnn_common.spec_files import save_spec
from cnn_common.weights import init_weights


def parse(argv: list[str], default_init: str = "native") -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="test-cnn")
    add_train_arguments(parser, default_init=default_init)
    return parser.parse_args(argv)


def parse_train(argv: list[str], framework: str = "numpy") -> argparse.Namespace:
    """``<framework>-cnn train ARGV`` as every trainer's command line parses it."""
    parser = argparse.ArgumentParser(prog=f"{framework}-cnn")
    commands = parser.add_subparsers(dest="command", required=True)
    add_trainer_command(commands, framework, "train it")
    return parser.parse_args(["train", *argv])


def test_no_flags_give_the_default_specs() -> None:
    args = parse([])
    assert specs_from_args(args) == (ModelSpec(), TrainSpec())
    assert (args.dataset, args.data_dir, args.subset, args.resume, args.init) == (
        "mnist",
        None,
        None,
        False,
        "native",
    )
    assert init_from_args(args, ModelSpec(), TrainSpec()) is None


def test_the_train_command_defaults() -> None:
    args = parse_train([], framework="keras")
    assert args.command == "train"
    assert specs_from_args(args) == (ModelSpec(), TrainSpec())
    assert (args.out, args.overwrite, args.resume, args.device, args.quiet, args.init) == (
        Path("runs") / "keras",
        False,
        False,
        "auto",
        False,
        "native",
    )
    with pytest.raises(SystemExit):
        parse_train(["--device", "tpu"])


def test_spec_file_then_set_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    save_spec(path, ModelSpec(conv=(ConvBlock(filters=4),)), TrainSpec(epochs=7, seed=3))
    args = parse(
        [
            "--spec",
            str(path),
            "--set",
            "epochs=4",
            "--set",
            "conv.0.filters=6",
            "--set",
            "learning_rate=2e-3",
            "--epochs",
            "2",
            "--batch-size",
            "64",
            "--dtype",
            "float64",
        ]
    )
    model, train = specs_from_args(args)
    assert model.conv == (ConvBlock(filters=6),)  # --set over the file
    assert train.epochs == 2  # --epochs over --set over the file
    assert (train.seed, train.learning_rate, train.batch_size, train.dtype) == (
        3,  # from the file
        2e-3,
        64,
        "float64",
    )


def test_bad_flags_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="'filterz'"):
        specs_from_args(parse(["--set", "conv.0.filterz=2"]))
    with pytest.raises(SpecError, match="epochs must be"):
        specs_from_args(parse(["--epochs", "0"]))
    with pytest.raises(SpecError, match="cannot read spec file"):
        specs_from_args(parse(["--spec", str(tmp_path / "missing.yaml")]))
    with pytest.raises(SystemExit):  # argparse's own choice check
        parse(["--dtype", "float16"])


def test_init_from_args_shared(tmp_path: Path) -> None:
    args = parse(["--seed", "5", "--dtype", "float64"], default_init="shared")
    model, train = specs_from_args(args)
    weights = init_from_args(args, model, train)
    expected = init_weights(model, 5, "float64")
    assert weights is not None and list(weights) == list(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(weights[name], value)


def test_data_from_args_subset(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CNN_DATA_DIR", raising=False)
    args = parse(["--data-dir", str(data_dir), "--subset", "200", "--set", "validation_size=100"])
    _, train = specs_from_args(args)
    data = data_from_args(args, train)
    # --subset cuts the training images only: validation and test stay whole
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (200, 100, 10_000)
    assert data.x_train.dtype == np.float32 and data.name == "mnist"
    with pytest.raises(UserError, match="--subset must be a positive number of images, got 0"):
        data_from_args(parse(["--data-dir", str(data_dir), "--subset", "0"]), train)


def test_data_from_args_missing_data_is_a_user_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CNN_DATA_MIRRORS", "http://127.0.0.1:9/")  # discard port: refused
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("CNN_DATA_DIR", raising=False)
    monkeypatch.setattr("cnn_common.data.DEBIAN_DIR", tmp_path / "debian")
    (tmp_path / "empty").mkdir()  # a folder with no data in it (a missing one is refused first)
    args = parse(["--data-dir", str(tmp_path / "empty")])
    with pytest.raises(DataError, match="dataset 'mnist' not found"):
        data_from_args(args, TrainSpec())


def test_run_cli_turns_user_errors_into_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    def fails() -> int:
        raise SpecError("conv[0].filters must be an integer >= 1, got 0", "set it to 1 or more")

    assert run_cli(fails, "numpy-cnn") == EXIT_USER_ERROR == 2
    err = capsys.readouterr().err
    assert err == (
        "numpy-cnn: error: conv[0].filters must be an integer >= 1, got 0\n"
        "  fix: set it to 1 or more\n"
    )
    assert "Traceback" not in err
    assert run_cli(lambda: None, "numpy-cnn") == 0
    assert run_cli(lambda: 3, "numpy-cnn") == 3


def test_run_cli_keeps_bugs_and_handles_interrupts(capsys: pytest.CaptureFixture[str]) -> None:
    def bug() -> int:
        raise KeyError("a bug keeps its traceback")

    with pytest.raises(KeyError):
        run_cli(bug, "numpy-cnn")

    def interrupted() -> int:
        raise KeyboardInterrupt

    assert run_cli(interrupted, "numpy-cnn") == 130
    assert "numpy-cnn: interrupted" in capsys.readouterr().err


# ----------------------------------------------------------------------------- train_from_args


class FakeTrain:
    """Stands for a framework's ``train``: records how it was called, returns a record."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, model, train, data, out, **kwargs) -> RunResult:  # noqa: ANN001
        self.calls.append({"model": model, "train": train, "data": data, "out": out, **kwargs})
        result = RunResult("numpy", "numpy", "mnist", {}, {}, "native", "cpu", {}, 0)
        result.test_accuracy, result.test_loss, result.wall_time_s = 0.5, 1.25, 2.0
        return result


def test_an_out_holding_a_finished_run_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / RESULT_FILE).write_text("{}")
    fake = FakeTrain()
    # The refusal comes first: no data is loaded (there is none here) and nothing trains.
    args = parse_train(["--out", str(out), "--data-dir", str(tmp_path / "nowhere")])
    with pytest.raises(UserError) as info:
        train_from_args(args, fake)
    assert info.value.message == f"{out} already holds a finished run ({RESULT_FILE})"
    assert "--resume" in info.value.hint and "--overwrite" in info.value.hint
    assert fake.calls == [] and (out / RESULT_FILE).read_text() == "{}"


@pytest.mark.parametrize("flag", ["--resume", "--overwrite"])
def test_resume_or_overwrite_lets_the_trainer_run(
    tmp_path: Path, data_dir: Path, flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / RESULT_FILE).write_text("{}")
    fake = FakeTrain()
    argv = ["--out", str(out), "--data-dir", str(data_dir), "--subset", "64", flag]
    argv += ["--init", "shared", "--seed", "2", "--device", "cpu"]
    result = train_from_args(parse_train(argv), fake)
    (call,) = fake.calls
    assert result.test_accuracy == 0.5
    assert call["out"] == out and call["resume"] is (flag == "--resume")
    assert (call["device"], call["progress"]) == ("cpu", True)
    assert call["train"].seed == 2 and len(call["data"].x_train) == 64
    expected = init_weights(ModelSpec(), 2)
    assert list(call["init_weights"]) == list(expected)
    np.testing.assert_array_equal(call["init_weights"]["conv1.kernel"], expected["conv1.kernel"])
    assert capsys.readouterr().out == (
        f"numpy (numpy): test accuracy 0.5000, test loss 1.2500, 2.0 s -> {out}\n"
    )


def test_quiet_prints_nothing(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeTrain()
    argv = ["--out", str(tmp_path / "run"), "--data-dir", str(data_dir), "--subset", "64"]
    train_from_args(parse_train([*argv, "--quiet"]), fake)
    (call,) = fake.calls
    assert call["progress"] is False and call["resume"] is False
    assert call["init_weights"] is None  # --init native: the framework initialises
    assert capsys.readouterr().out == ""


# ----------------------------------------------------------------------------- programs


def test_the_trainer_command_line_has_train_and_room_for_more() -> None:
    command_line = trainer_command_line("demo-cnn", "The demo CNN.", "demo", "Train it.")
    command_line.train.add_argument("--backend", default="own")
    command_line.commands.add_parser("extra")
    parser = command_line.parser
    assert (parser.prog, parser.description, parser.epilog) == (
        "demo-cnn",
        "The demo CNN.",
        EXIT_STATUSES,
    )
    assert (command_line.train.description, command_line.train.epilog) == (
        "Train it.",
        EXIT_STATUSES,
    )
    args = parser.parse_args(["train"])
    assert (args.command, args.out, args.backend, args.devices) == (
        "train",
        Path("runs") / "demo",
        "own",
        1,
    )
    assert parser.parse_args(["extra"]).command == "extra"


def declaration(package: str, requires: tuple[str, ...] = ()) -> FrameworkInfo:
    native = {topic: "its own" for topic in TOPICS}
    return FrameworkInfo("demo", "Demo", package, requires, "demo", native, ".npz")


def test_run_train_command_trains_the_declared_package(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = ModuleType("demo_train_cnn")
    package.train = FakeTrain()
    monkeypatch.setitem(sys.modules, package.__name__, package)
    argv = ["--out", str(tmp_path / "run"), "--data-dir", str(data_dir), "--subset", "64"]
    assert run_train_command(parse_train([*argv, "--quiet"]), declaration("demo_train_cnn")) == 0
    (call,) = package.train.calls
    assert call["out"] == tmp_path / "run" and len(call["data"].x_train) == 64


def test_run_train_command_needs_the_declared_modules(tmp_path: Path) -> None:
    args = parse_train(["--out", str(tmp_path / "run")])
    with pytest.raises(FrameworkMissingError, match="'demo_module_not_installed'"):
        run_train_command(args, declaration("demo_unused_cnn", ("demo_module_not_installed",)))
    assert "demo_unused_cnn" not in sys.modules and not (tmp_path / "run").exists()
