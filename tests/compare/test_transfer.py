"""``cnn-compare run --init-from RUN``: every framework starts from a trained run's matching
layers (an MNIST resnet_small under examples/resnet_small_transfer.yaml's fresh head, on
Fashion-MNIST); bad runs are refused with exit 2 before anything is written; --resume keeps
the source."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnn_common.errors import FrameworkMissingError
from cnn_common.results import RunResult
from cnn_common.spec import ModelSpec, TrainSpec, spec_to_dict
from cnn_common.weights import load_weights
from compare.__main__ import main
from compare.engine import registry
from compare.engine.layout import CONFIG_FILE, WEIGHTS_FILE, run_dir
from compare.report.differences import differences
from tests.bad_input_setups import compare_results
from tests.cnn_common.test_transfer import BASE_LAYERS, EXAMPLES, run_folder

TRANSFER = str(EXAMPLES / "resnet_small_transfer.yaml")
SMALL = ["--subset", "256", "--eval-subset", "128", "--epochs", "1", "--quiet"]


def installed(framework: str) -> bool:
    try:
        registry.check_installed(framework)
    except FrameworkMissingError:
        return False
    return True


def refused(capsys: pytest.CaptureFixture[str], out: Path, *argv: str) -> str:
    """Run ``cnn-compare run ARGV --out OUT``; it must fail as a user error and leave no
    ``out``. Returns stderr."""
    assert main(["run", *argv, "--out", str(out), "--frameworks", "numpy", *SMALL]) == 2
    error = capsys.readouterr().err
    assert error.startswith("cnn-compare: error: --init") and "\n  fix: " in error
    assert not out.exists()
    return error


def test_a_missing_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    error = refused(capsys, tmp_path / "o", "--init-from", str(tmp_path / "nothere"))
    assert f"--init-from {tmp_path / 'nothere'}: no such run folder or weight file" in error


def test_a_run_of_an_incompatible_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_folder(tmp_path / "mnist")
    argv = ["--spec", TRANSFER, "--set", "layers.3.filters=24", "--init-from"]
    error = refused(capsys, tmp_path / "o", *argv, str(tmp_path / "mnist"))
    assert "layers of this spec differ from the run's layers of the same name" in error
    assert "stage1_conv1.kernel: the run's (3, 3, 16, 16), this spec's (3, 3, 16, 24)" in error
    run_folder(tmp_path / "seed", ModelSpec(), TrainSpec())
    error = refused(
        capsys, tmp_path / "o", "--spec", TRANSFER, "--init-from", str(tmp_path / "seed")
    )
    assert "no layer of this spec is in the run" in error


def test_a_frozen_layer_left_fresh(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_folder(tmp_path / "mnist")
    argv = ["--spec", TRANSFER, "--set", "layers.7.trainable=false"]  # the head
    error = refused(capsys, tmp_path / "o", *argv, "--init-from", str(tmp_path / "mnist"))
    assert "would keep random ones: head" in error


def test_init_native_and_a_run_inside_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_folder(tmp_path / "mnist")
    source = str(tmp_path / "mnist")
    argv = ["--spec", TRANSFER, "--init", "native", "--init-from", source]
    assert "--init native cannot go with it" in refused(capsys, tmp_path / "o", *argv)
    inside = tmp_path / "out"
    run_folder(inside / "runs" / "numpy-seed0")
    argv = ["--spec", TRANSFER, "--init-from", str(inside / "runs" / "numpy-seed0")]
    assert main(["run", *argv, "--out", str(inside), "--frameworks", "numpy", *SMALL]) == 2
    assert "whose runs this command replaces" in capsys.readouterr().err
    assert sorted(p.name for p in inside.rglob("*")) == [
        "numpy-seed0",
        "run.json",
        "runs",
        WEIGHTS_FILE,
    ]


def test_the_command_line_says_it_with_exit_2(tmp_path: Path) -> None:
    out = tmp_path / "o"
    command = [sys.executable, "-m", "compare", "run", "--init-from", str(tmp_path / "x")]
    done = subprocess.run(
        [*command, "--out", str(out)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "cnn-compare: error: --init-from" in done.stderr and not out.exists()


def test_resume_refuses_init_from_given_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    out.mkdir()
    compare_results(tmp_path, out, None)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(["run", "--resume", "--out", str(out), "--init-from", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "--resume takes its configuration from" in error and "do not give --init-from" in error
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_the_report_says_where_the_weights_came_from() -> None:
    config = {"init": "shared", **spec_to_dict(ModelSpec(), TrainSpec())}
    source = "/runs/mnist/runs/numpy-seed0/weights.safetensors"
    row = {d.key: d for d in differences({**config, "init_from": source}, ["numpy"])}["init"]
    assert row.this_run.startswith(f"transfer: the matching layers of {source}, the others")
    plain = {d.key: d for d in differences(config, ["numpy"])}["init"]
    assert plain.this_run.startswith("shared: one Glorot-uniform set")


@pytest.mark.slow
def test_transfer_from_mnist_to_fashion_in_every_framework(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frameworks = ["numpy", "pytorch", *(["keras"] if installed("keras") else [])]
    data = ["--data-dir", str(data_dir)]
    mnist = tmp_path / "mnist"
    spec = str(EXAMPLES / "resnet_small.yaml")
    argv = ["run", "--spec", spec, "--frameworks", "numpy", *SMALL, *data, "--out", str(mnist)]
    assert main(argv) == 0
    source = run_dir(mnist, "numpy", 0)
    before, _, _ = load_weights(source / WEIGHTS_FILE)
    capsys.readouterr()

    out = tmp_path / "fashion"
    argv = ["run", "--spec", TRANSFER, "--dataset", "fashion-mnist", "--init-from", str(source)]
    assert (
        main([*argv, "--frameworks", ",".join(frameworks), *SMALL, *data, "--out", str(out)]) == 0
    )
    printed = capsys.readouterr().out
    assert (
        f"starting weights from {source / WEIGHTS_FILE} (numpy on mnist): 18 layers loaded, "
        "2 fresh (head, logits), 18 frozen; left out of the run: logits"
    ) in printed
    assert json.loads((out / CONFIG_FILE).read_text())["init_from"] == str(source / WEIGHTS_FILE)
    digests = set()
    for framework in frameworks:
        record = RunResult.from_json(run_dir(out, framework, 0) / "run.json")
        assert (record.init, record.init_from) == ("transfer", str(source / WEIGHTS_FILE))
        assert record.dataset == "fashion-mnist"
        digests.add(record.init_digest)
        after, _, _ = load_weights(run_dir(out, framework, 0) / WEIGHTS_FILE)
        # the frozen base (its batchnorms in inference mode) is the source run's, bit for bit
        for name, value in after.items():
            if name.split(".")[0] in BASE_LAYERS:
                np.testing.assert_array_equal(value, before[name], err_msg=f"{framework} {name}")
        assert not np.array_equal(after["logits.kernel"], before["logits.kernel"])
    assert len(digests) == 1  # every framework started from the same weights

    # --resume keeps the source and refuses it given again
    assert main(["run", "--resume", "--out", str(out), "--init-from", str(source)]) == 2
    assert "do not give --init-from" in capsys.readouterr().err
    shutil.rmtree(run_dir(out, "pytorch", 0))
    assert main(["run", "--resume", "--out", str(out), "--quiet", *data]) == 0
    again = RunResult.from_json(run_dir(out, "pytorch", 0) / "run.json")
    assert (again.init, again.init_digest) == ("transfer", digests.pop())
