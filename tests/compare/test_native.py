"""Frameworks as their users write them: ``cnn-compare run --native``, the ablation's
convention factors and its cumulative mode (``compare.ablate.cumulative``).

The statistics must prove both answers: Keras and PyTorch differing in exactly one convention
(batchnorm's running-average momentum) are a real difference, and the same two with it aligned
are equivalent within the margin. That test trains for real, on a small batchnorm model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cnn_common.results import EpochRecord, RunResult, finish_result
from cnn_common.spec import ModelSpec, TrainSpec
from compare.ablate.arms import BASELINE, FACTORS, Arm, plan_arms, plan_stages
from compare.ablate.cumulative import summarize_cumulative
from compare.engine.layout import ABLATION_DIR, ABLATION_FILE, RESULT_FILE, RUNS_DIR, run_dir
from compare.stats.inference import EQUIVALENT, REAL
from tests.compare.test_ablate import cnn_compare
from tests.compare.test_cli import assert_user_error, cli
from tests.contract.families import FAMILIES

RESNET = FAMILIES["resnet_small"]
SCHEDULED = TrainSpec(lr_schedule="cosine", weight_decay=1e-4)
# Two strided convolutions with batchnorm under a linear classifier: it learns in one short
# epoch at a high rate, so its running statistics matter at evaluation.
SMALL_BN = """\
model:
  layers:
    - {kind: conv, name: c1, filters: 8, kernel_size: 3, stride: 2, padding: same, bias: false}
    - {kind: batchnorm, name: bn1}
    - {kind: activation, name: r1, activation: relu}
    - {kind: conv, name: c2, filters: 16, kernel_size: 3, stride: 2, padding: same, bias: false}
    - {kind: batchnorm, name: bn2}
    - {kind: activation, name: r2, activation: relu}
    - {kind: flatten, name: flat}
train:
  epochs: 1
  learning_rate: 0.01
"""
SMALL = ["--subset", "3000", "--eval-subset", "2000", "--quiet"]


@pytest.fixture(scope="module")
def small_bn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "small_bn.yaml"
    path.write_text(SMALL_BN)
    return path


# ----------------------------------------------------------------------------- planning


def test_the_convention_factors_run_where_a_framework_has_its_own() -> None:
    found = {
        (arm.framework, arm.factor): arm
        for arm in plan_arms(("keras", "pytorch"), FACTORS, RESNET, SCHEDULED, threads=2)
    }
    for topic in ("epsilon", "bn_momentum", "bn_epsilon", "bn_variance", "weight_decay"):
        assert found[("keras", topic)].native == (topic,), topic
        assert found[("pytorch", topic)].why == (
            f"pytorch's own {found[('pytorch', topic)].why.split('own ')[1]}"
        )
        assert not found[("pytorch", topic)].runs
    assert found[("keras", "schedule")].runs  # Keras steps its schedules every update
    assert not found[("pytorch", "schedule")].runs  # the spec's schedule is per epoch
    assert found[("keras", "frozen_bn")].why == "not applicable: the spec has no frozen batchnorm"


def test_stages_align_one_topic_at_a_time_and_reuse_runs_of_the_same_settings() -> None:
    frameworks, factors = ("keras", "pytorch"), ("init", "bn_momentum", "bn_epsilon")
    arms = plan_arms(frameworks, factors, RESNET, TrainSpec(), threads=2)
    stages = {(arm.framework, arm.factor): arm for arm in plan_stages(
        frameworks, factors, RESNET, TrainSpec(), arms)}  # fmt: skip
    assert len(stages) == 2 * 4
    first = stages[("keras", "stage0")]
    assert first.runs and first.init == "native"
    assert set(first.native) == {"bn_momentum", "bn_epsilon"}
    assert stages[("keras", "stage1")].runs and stages[("keras", "stage1")].init == "shared"
    # one topic left native: that factor's arm; none: the baseline
    assert stages[("keras", "stage2")].same_as == "bn_epsilon"
    assert stages[("keras", "stage3")].same_as == BASELINE
    # PyTorch's own batchnorm is the spec's: only its initialisers change anything
    assert stages[("pytorch", "stage0")].same_as == "init"
    assert all(stages[("pytorch", f"stage{k}")].same_as == BASELINE for k in (1, 2, 3))


# ----------------------------------------------------------------------------- the summary

SEEDS = [0, 1, 2, 3, 4]
# framework -> arm -> test loss per seed; the gap closes by 0.3 at momentum, by ~0 at epsilon
LOSSES = {
    "keras": {
        "stage0": [0.60, 0.62, 0.58, 0.61, 0.59],
        "stage1": [0.301, 0.299, 0.302, 0.298, 0.300],
        BASELINE: [0.3005, 0.2995, 0.3015, 0.2985, 0.3003],
    },
    "pytorch": {BASELINE: [0.300, 0.300, 0.301, 0.299, 0.300]},
}


def write_run(folder: Path, framework: str, arm: str, seed: int, loss: float) -> None:
    y_test = np.arange(1000) % 10
    result = finish_result(
        framework=framework, backend="x", device="cpu", versions={}, dataset="mnist",
        class_names=[str(i) for i in range(10)], model_spec=ModelSpec(),
        train_spec=TrainSpec(epochs=1, seed=seed), init="shared",
        history=[EpochRecord(1, 0.3, 0.9, 0.2, 0.95, 1.0)], step_losses=[0.5], test_loss=loss,
        y_test=y_test, y_pred=y_test, n_train=100, wall_time_s=1.0,
    )  # fmt: skip
    path = folder / RUNS_DIR / framework / f"{arm}-seed{seed}"
    path.mkdir(parents=True)
    result.to_json(path / RESULT_FILE)


def test_the_gaps_and_steps_add_up_and_say_which_step_closed_it(tmp_path: Path) -> None:
    for framework, arms in LOSSES.items():
        for arm, losses in arms.items():
            for seed, loss in zip(SEEDS, losses, strict=True):
                write_run(tmp_path, framework, arm, seed, loss)
    stages = [
        Arm("keras", "stage0", True, native=("bn_momentum", "bn_epsilon")),
        Arm("keras", "stage1", True, native=("bn_epsilon",)),
        Arm("keras", "stage2", False, "the runs of baseline", same_as=BASELINE),
        *(Arm("pytorch", f"stage{k}", False, "", same_as=BASELINE) for k in range(3)),
    ]
    summary = summarize_cumulative(tmp_path, stages, ("bn_momentum", "bn_epsilon"), SEEDS)
    assert summary["frameworks"] == ["keras", "pytorch"]
    gaps = [stage["loss"]["difference"] for stage in summary["stages"]]
    closed = [step["loss"]["difference"] for step in summary["steps"]]
    assert gaps[0] == pytest.approx(np.mean(LOSSES["keras"]["stage0"]) - 0.3)
    assert gaps[0] == pytest.approx(gaps[-1] + sum(closed))  # the waterfall adds up
    assert [step["topic"] for step in summary["steps"]] == ["bn_momentum", "bn_epsilon"]
    momentum, epsilon = summary["steps"]
    assert momentum["loss"]["verdict"] == REAL and momentum["loss"]["low"] > 0.25
    assert epsilon["loss"]["verdict"] == EQUIVALENT  # within ±0.02 nats
    assert summary["stages"][0]["loss"]["verdict"] == REAL
    assert summary["stages"][-1]["loss"]["verdict"] == EQUIVALENT
    assert summary["stages"][-1]["runs"] == {"keras": BASELINE, "pytorch": BASELINE}


# ----------------------------------------------------------------------------- for real


@pytest.fixture(scope="module")
def one_convention(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path, small_bn: Path
) -> dict[str, Any]:
    """Keras against PyTorch, batchnorm momentum native then aligned, three seeds."""
    out = tmp_path_factory.mktemp("cumulative")
    args = ["--frameworks", "keras,pytorch", "--factors", "bn_momentum", "--cumulative"]
    args += ["--seeds", "3", "--spec", str(small_bn), *SMALL, "--out", str(out)]
    result = cnn_compare(data_dir, "ablate", *args)
    return {"out": out, "result": result}


@pytest.mark.slow
def test_one_convention_apart_is_real_and_aligned_is_equivalent(one_convention: dict) -> None:
    out, result = one_convention["out"], one_convention["result"]
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((out / ABLATION_FILE).read_text())
    effect = next(row for row in summary["effects"] if row["framework"] == "keras")
    assert effect["factor"] == "bn_momentum" and effect["verdicts"]["loss"] == REAL
    native, aligned = summary["cumulative"]["stages"]
    assert native["loss"]["verdict"] == REAL and native["loss"]["low"] > 0
    assert aligned["loss"]["verdict"] == EQUIVALENT
    assert aligned["accuracy"]["verdict"] == EQUIVALENT
    step = summary["cumulative"]["steps"][0]
    assert step["topic"] == "bn_momentum" and step["loss"]["verdict"] == REAL
    # the native arm really trained Keras's own momentum, and only that
    record = RunResult.from_json(
        out / ABLATION_DIR / RUNS_DIR / "keras" / "bn_momentum-seed0" / RESULT_FILE
    )
    assert record.native == ["bn_momentum"]
    norms = [item for item in record.model_spec["layers"] if item["kind"] == "batchnorm"]
    assert {(n["momentum"], n["momentum_convention"], n["epsilon"]) for n in norms} == {
        (0.99, "keras", 1e-5)
    }
    assert "cumulative: the gap keras - pytorch" in result.stdout
    markdown = (out / "report.md").read_text()
    assert "## Closing the gap: keras against pytorch, one topic at a time" in markdown
    assert (out / "figures" / "ablation-cumulative.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_run_native_all_trains_each_framework_as_its_users_write_it(
    tmp_path: Path, data_dir: Path, small_bn: Path
) -> None:
    out = tmp_path / "out"
    args = ["run", "--frameworks", "keras,pytorch,numpy", "--spec", str(small_bn)]
    result = cnn_compare(data_dir, *args, "--native", "all", *SMALL, "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(
        line.startswith("keras: native init, order, epsilon, bn_momentum, bn_epsilon, "
                        "bn_variance; its own is the spec's: padding")
        for line in lines
    )  # fmt: skip
    assert any(
        line.startswith("pytorch: native init, order, padding; its own is the spec's: epsilon")
        for line in lines
    )
    assert any(
        line.startswith("numpy: native order; none of its own: init, epsilon") for line in lines
    )
    keras = RunResult.from_json(run_dir(out, "keras", 0) / RESULT_FILE)
    torch = RunResult.from_json(run_dir(out, "pytorch", 0) / RESULT_FILE)
    assert keras.init == "native" and torch.init == "native"
    assert set(keras.native) == {"order", "epsilon", "optimizer", "bn_momentum", "bn_epsilon",
                                 "bn_variance"}  # fmt: skip
    assert (keras.train_spec["epsilon"], keras.train_spec["epsilon_convention"]) == (1e-7, "keras")
    norms = [item for item in keras.model_spec["layers"] if item["kind"] == "batchnorm"]
    assert norms[0]["momentum"] == 0.99 and norms[0]["variance"] == "biased"
    assert torch.native == ["order", "padding"]
    config = json.loads((out / "config.json").read_text())
    assert config["native"][:3] == ["init", "order", "padding"]
    markdown = (out / "report.md").read_text()
    assert "| BatchNorm running average | BatchNormalization(momentum=0.99)" in markdown
    assert "each framework's own (--native); the spec: momentum 0.1" in markdown
    # the results table says which topics each framework ran natively
    keras_row = next(line for line in markdown.splitlines() if line.startswith("| keras ("))
    assert "bn_momentum, bn_variance, epsilon, optimizer, order" in keras_row


def test_native_bad_input_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    out = tmp_path / "o"
    result = cli("run", "--native", "bn_mometum", "--out", str(out))
    assert_user_error(result, "unknown topic(s) 'bn_mometum'", "bn_momentum", "schedule")
    result = cli("run", "--native", "", "--out", str(out))
    assert_user_error(result, "unknown topic(s)")
    result = cli("ablate", "--frameworks", "keras,pytorch,numpy", "--cumulative", "--out", str(out))
    assert_user_error(result, "--cumulative compares two frameworks, got 3", "--frameworks")
    assert not out.exists()
