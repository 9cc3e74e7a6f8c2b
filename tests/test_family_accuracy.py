"""The example model families reach their accuracy goals: ``cnn-compare run --spec`` trains
each for its 5 epochs on the real data from the shared initial weights (seed 0), and the test
accuracy is at least 98.5 % on MNIST and 88 % on Fashion-MNIST.

Every (spec, dataset, framework) is a case. One of them runs in CI (marked ``slow``): the
residual network on MNIST in PyTorch, the fastest framework on the largest family. The others
are the grid (marked ``grid`` too), which a whole CI run cannot afford (about three minutes a
case on two cores): ``python3 dev.py test -m grid`` runs them.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnn_common.results import RunResult
from compare.engine.layout import RESULT_FILE, run_dir

REPO = Path(__file__).resolve().parents[1]
GOALS = {"mnist": 0.985, "fashion-mnist": 0.88}
SPECS = ("resnet_small", "vgg_small", "mobilenet_small")
FRAMEWORKS = ("numpy", "keras", "keras-torch", "keras-jax", "lightning", "pytorch")
IN_CI = {("resnet_small", "mnist", "pytorch")}


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
