"""The example model families reach their accuracy goals: ``cnn-compare run --spec`` trains
each for its 5 epochs on the real data from the shared initial weights (seed 0), and the test
accuracy is at least 98.5 % on MNIST and 88 % on Fashion-MNIST. Deployed in int8, each keeps
its accuracy within 0.3 points of the float model and is at least 3x smaller.

Every (spec, dataset, framework) is a case. One of them runs in CI (marked ``slow``): the
residual network on MNIST in PyTorch, the fastest framework on the largest family. The others
are the grid (marked ``grid`` too), which a whole CI run cannot afford (about three minutes a
case on two cores): ``python3 dev.py test -m grid`` runs them.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnn_common.results import RunResult
from compare.convert import litert
from compare.engine.layout import CONVERT_FILE, CONVERTED_DIR, RESULT_FILE, run_dir

REPO = Path(__file__).resolve().parents[1]
GOALS = {"mnist": 0.985, "fashion-mnist": 0.88}
SPECS = ("resnet_small", "vgg_small", "mobilenet_small")
FRAMEWORKS = ("numpy", "keras", "keras-torch", "keras-jax", "lightning", "pytorch")
IN_CI = {("resnet_small", "mnist", "pytorch")}
# Deployed in int8, mobilenet_small is about 2.3x smaller, not 3x: the fixed costs of the
# files (about 25 KB) outweigh its few weights (docs/design.md). The test holds that miss as
# measured, so a change either way shows.
INT8_SIZE_MISSED = {"mobilenet_small"}


def cases() -> list:
    """Every case, the grid's marked ``grid``."""
    made = []
    for spec, dataset, framework in itertools.product(SPECS, GOALS, FRAMEWORKS):
        marks = [pytest.mark.slow]
        if (spec, dataset, framework) not in IN_CI:
            marks.append(pytest.mark.grid)
        made.append(pytest.param(spec, dataset, framework, marks=marks))
    return made


@pytest.mark.parametrize(("spec", "dataset", "framework"), cases())
def test_the_family_reaches_its_goal(
    spec: str, dataset: str, framework: str, data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "compare", "run", "--spec", str(REPO / "examples" / f"{spec}.yaml")]
        + ["--frameworks", framework, "--dataset", dataset, "--out", str(out), "--quiet"],
        cwd=REPO,
        env={**os.environ, "CNN_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = RunResult.from_json(run_dir(out, framework, 0) / RESULT_FILE)
    assert result.init == "shared" and len(result.history) == 5
    assert result.sizes["test"] == 10_000
    assert result.test_accuracy >= GOALS[dataset], f"{spec} {dataset} {framework}"
    check_int8_goals(run_dir(out, framework, 0), data_dir, spec not in INT8_SIZE_MISSED)


def check_int8_goals(run: Path, data_dir: Path, size_goal: bool = True) -> None:
    """The trained family deployed in int8 (ONNX, and LiteRT where it is installed) keeps its
    test accuracy within 0.3 points of the float model and is at least 3x smaller (without
    ``size_goal``: less than 3x smaller, the miss convert reports with exit status 1)."""
    formats = ["--onnx", *(["--litert"] if litert.available() else [])]
    done = subprocess.run(
        [sys.executable, "-m", "compare", "convert", str(run), "--to", "pytorch", *formats]
        + ["--quantize", "int8", "--repeats", "10"],
        cwd=REPO,
        env={**os.environ, "CNN_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == (0 if size_goal else 1), done.stdout[-3000:] + done.stderr[-3000:]
    table = json.loads((run / CONVERTED_DIR / CONVERT_FILE).read_text())["deployment"]
    int8 = [entry for entry in table["rows"] if entry["format"].endswith("int8")]
    assert len(int8) == len(formats)
    for entry in int8:
        assert entry["points_lost"] <= 0.3 and (entry["smaller"] >= 3) == size_goal, entry
