"""Bad input to ``cnn-compare``: a clear message, exit status 2, no traceback, nothing lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnn_common.spec import ModelSpec, TrainSpec
from compare.__main__ import main
from compare.engine import registry
from compare.engine.layout import CONFIG_FILE, run_dir
from compare.run.command import RunOptions


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "compare", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=300,
    )


def assert_user_error(result: subprocess.CompletedProcess, *phrases: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "cnn-compare: error:" in result.stderr or "usage:" in result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, (phrase, result.stderr)


def test_unknown_framework(tmp_path: Path) -> None:
    result = cli("run", "--frameworks", "numpy,caffe", "--out", str(tmp_path / "o"))
    assert_user_error(result, "unknown framework", "caffe", ", ".join(registry.frameworks()))
    assert not (tmp_path / "o").exists()


def test_unknown_dataset(tmp_path: Path) -> None:
    # --dataset lists its choices: argparse refuses an unknown one before anything runs
    result = cli("run", "--dataset", "cifar-11", "--out", str(tmp_path / "o"))
    assert_user_error(result, "invalid choice: 'cifar-11'", "'fashion-mnist', 'mnist'")
    assert not (tmp_path / "o").exists()


def test_unreadable_spec(tmp_path: Path) -> None:
    result = cli("run", "--spec", str(tmp_path / "missing.yaml"))
    assert_user_error(result, "cannot read spec file", "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: {conv: [filters: 3\n")
    assert_user_error(cli("run", "--spec", str(broken)), "not valid", "broken.yaml")


@pytest.mark.parametrize(
    ("text", "phrases"),
    [
        ("model: {conv: [{kernel_size: 30}]}", ("conv1", "does not fit")),
        ("model: {conv: [{filters: 0}]}", ("conv[0].filters",)),
        ("train: {optimizer: adagrad}", ("optimizer", "adam, sgd")),
        ("model: {colour: red}", ("unknown field", "colour")),
    ],
)
def test_impossible_spec(tmp_path: Path, text: str, phrases: tuple[str, ...]) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    assert_user_error(cli("run", "--spec", str(spec)), *phrases)


def test_missing_data_offline(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {
        "CNN_DATA_DIR": str(empty),
        "CNN_CACHE_DIR": str(tmp_path / "cache"),
        "HOME": str(tmp_path),
        "CNN_DATA_MIRRORS": "http://127.0.0.1:9/",
    }
    result = cli("run", "--out", str(tmp_path / "o"), env=env)
    assert_user_error(result, "dataset 'mnist' not found", str(empty), "CNN_DATA_DIR")
    assert not list((tmp_path / "cache").rglob("*.gz"))


def test_report_of_a_folder_without_results(tmp_path: Path) -> None:
    assert_user_error(cli("report", str(tmp_path)), "not a results folder")


def test_bad_flag_value() -> None:
    result = cli("run", "--init", "random")
    assert result.returncode == 2 and "invalid choice" in result.stderr


@pytest.mark.slow
def test_framework_not_installed_loses_nothing_else(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    data_dir: Path,
) -> None:
    """keras reported missing: numpy still trains, the report names keras and the fix."""
    real = registry.missing_modules
    monkeypatch.setattr(
        registry,
        "missing_modules",
        lambda name: ["tensorflow"] if name == "keras" else real(name),
    )
    out = tmp_path / "o"
    status = main(
        [
            "run",
            "--frameworks",
            "keras,numpy",
            "--subset",
            "600",
            "--epochs",
            "1",
            "--out",
            str(out),
            "--quiet",
            "--data-dir",
            str(data_dir),
        ]
    )
    err = capsys.readouterr().err
    assert status == 2
    assert "Traceback" not in err
    failed = json.loads((run_dir(out, "keras", 0) / "failed.json").read_text())
    assert "tensorflow" in failed["error"] and 'pip install -e ".[keras]"' in failed["error"]
    assert (run_dir(out, "numpy", 0) / "run.json").is_file()
    results = json.loads((out / "results.json").read_text())
    assert [r["framework"] for r in results["summary"]] == ["numpy"]
    assert "tensorflow" in (out / "report.html").read_text()


def test_help_shows_quiet_not_no_progress() -> None:
    result = cli("run", "--help")
    assert result.returncode == 0
    assert "--quiet" in result.stdout and "--no-progress" not in result.stdout
    assert_user_error(cli("run", "--no-progress"), "unrecognized arguments: --no-progress")


def saved_config(out: Path) -> dict:
    """A results folder's saved configuration, as `cnn-compare run` writes it."""
    options = RunOptions(
        frameworks=("numpy",),
        dataset="mnist",
        model_spec=ModelSpec(),
        train_spec=TrainSpec(epochs=1),
        subset=300,
        eval_subset=200,
        out=out,
    )
    out.mkdir(parents=True)
    (out / CONFIG_FILE).write_text(json.dumps(options.config()))
    return options.config()


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--frameworks", "numpy"], ["--frameworks"]),
        (["--epochs", "2"], ["--epochs"]),
        (["--subset", "300"], ["--subset"]),
        (["--eval-subset", "100"], ["--eval-subset"]),
        (["--seeds", "2"], ["--seeds"]),
        (["--init", "native"], ["--init"]),
        (["--dtype", "float64", "--batch-size", "64"], ["--dtype", "--batch-size"]),
        (["--set", "learning_rate=0.01"], ["--set"]),
    ],
)
def test_resume_refuses_flags_that_decide_the_results(
    tmp_path: Path, capsys: pytest.CaptureFixture, flags: list[str], named: list[str]
) -> None:
    out = tmp_path / "o"
    config = saved_config(out)
    assert main(["run", "--resume", "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert f"--resume takes its configuration from {out / CONFIG_FILE}" in err
    for flag in named:
        assert flag in err, (flag, err)
    assert f"cnn-compare run --resume --out {out}" in err  # the fix: the bare command
    assert "Traceback" not in err
    assert json.loads((out / CONFIG_FILE).read_text()) == config  # nothing changed
    assert sorted(p.name for p in out.iterdir()) == [CONFIG_FILE]  # nothing trained


def test_a_different_configuration_is_refused_before_anything_runs(tmp_path: Path) -> None:
    from cnn_common.errors import UserError
    from compare.run.command import run

    out = tmp_path / "o"
    config = saved_config(out)
    other = RunOptions(
        frameworks=("numpy",),
        dataset="mnist",
        model_spec=ModelSpec(),
        train_spec=TrainSpec(epochs=2),
        subset=300,
        eval_subset=200,
        out=out,
        resume=True,
    )
    with pytest.raises(UserError, match=r"different configuration \(differs in: train\)"):
        run(other)
    assert json.loads((out / CONFIG_FILE).read_text()) == config
    assert sorted(p.name for p in out.iterdir()) == [CONFIG_FILE]


def test_a_folder_written_before_a_spec_field_existed_resumes(tmp_path: Path) -> None:
    """A configuration saved without ``tf32`` and ``deterministic`` (an earlier version) reads
    with their defaults, so its folder resumes; a real difference is still refused."""
    from cnn_common.errors import UserError
    from compare.engine.options import check_out, read_config

    out = tmp_path / "o"
    config = saved_config(out)
    earlier = json.loads(json.dumps(config))
    del earlier["train"]["tf32"], earlier["train"]["deterministic"]
    (out / CONFIG_FILE).write_text(json.dumps(earlier))
    assert read_config(out / CONFIG_FILE) == config
    check_out(out, config, resume=True, overwrite=False)
    (out / CONFIG_FILE).write_text(json.dumps(earlier))
    changed = {**config, "train": {**config["train"], "epochs": 2}}
    with pytest.raises(UserError, match=r"differs in: train\)"):
        check_out(out, changed, resume=True, overwrite=False)
    damaged = {**earlier, "train": {**earlier["train"], "dtype": "float16"}}
    (out / CONFIG_FILE).write_text(json.dumps(damaged))
    assert read_config(out / CONFIG_FILE) == damaged  # a spec it cannot read stays as written
