"""``cnn-compare ablate``: which default causes a difference, and how much.

- ``compare.arms.plan_arms``: which arms run for which framework, and why the others do not;
- ``compare.ablation_stats.summarize`` on made-up run records with known effects and noise;
- the issue's acceptance test (slow): a real ablation of Lightning's initialisers against
  the threads noise floor, its table, ablation.json and report; ``--resume`` and bad input.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cnn_common.errors import UserError
from cnn_common.results import EpochRecord, RunResult, finish_result
from cnn_common.spec import ModelSpec, TrainSpec
from cnn_common.spec_files import apply_overrides
from compare.ablate.arms import BASELINE, FACTORS, Arm, check_factors, plan_arms
from compare.ablate.effects import noise_bands, row_verdict, summarize
from compare.engine.layout import ABLATION_DIR, ABLATION_FILE, RESULT_FILE, RUNS_DIR
from compare.stats.inference import EQUIVALENT, INCONCLUSIVE, REAL, compare_samples
from tests.compare.test_report import check_self_contained

THREE = ("numpy", "keras", "lightning")
# conv2: 3x3, stride 2, 'same' on 14x14: TensorFlow pads (0, 1), PyTorch's usual k // 2 (1, 1)
STRIDED_SAME = [
    "conv.0.padding=same",
    "conv.1.kernel_size=3",
    "conv.1.stride=2",
    "conv.1.padding=same",
    "conv.1.pool_size=0",
]


def arms_by(arms: list[Arm]) -> dict[tuple[str, str], Arm]:
    return {(arm.framework, arm.factor): arm for arm in arms}


# ----------------------------------------------------------------------------- plan_arms


def test_every_framework_gets_a_baseline_then_each_factor_in_order() -> None:
    arms = plan_arms(THREE, FACTORS, ModelSpec(), TrainSpec(), threads=2)
    assert [(a.framework, a.factor) for a in arms] == [
        (name, factor) for name in THREE for factor in (BASELINE, *FACTORS)
    ]
    for arm in arms:
        assert arm.runs == (arm.why == ""), arm  # a reason exactly when not run
    baseline = arms_by(arms)[("keras", BASELINE)]
    assert baseline.runs and baseline.init == "shared" and baseline.native == ()
    assert baseline.threads is None


def test_numpy_has_no_initialisers_and_no_epsilon_of_its_own() -> None:
    found = arms_by(plan_arms(THREE, FACTORS, ModelSpec(), TrainSpec(), threads=2))
    init, epsilon = found[("numpy", "init")], found[("numpy", "epsilon")]
    assert not init.runs and init.why == "numpy has no initialisers of its own"
    assert not epsilon.runs and epsilon.why == "numpy has no Adam epsilon of its own"
    assert found[("numpy", "order")].runs  # it shuffles on its own like everyone


def test_keras_and_lightning_run_init_epsilon_and_order() -> None:
    """Each runs its own initialisers and its own shuffling; its own epsilon runs where it is
    not the spec's (Keras's 1e-7 against the default spec, PyTorch's 1e-8 against a spec in
    Keras's convention)."""
    default = arms_by(plan_arms(THREE, FACTORS, ModelSpec(), TrainSpec(), threads=2))
    keras_spec = TrainSpec(epsilon=1e-7, epsilon_convention="keras")
    in_keras = arms_by(plan_arms(THREE, FACTORS, ModelSpec(), keras_spec, threads=2))
    for name in ("keras", "lightning"):
        for found in (default, in_keras):
            init, order = found[(name, "init")], found[(name, "order")]
            assert init.runs and init.init == "native" and init.native == ()
            assert order.runs and order.native == ("order",) and order.init == "shared"
    assert default[("keras", "epsilon")].runs
    assert default[("keras", "epsilon")].native == ("epsilon",)
    assert in_keras[("lightning", "epsilon")].runs
    assert in_keras[("lightning", "epsilon")].native == ("epsilon",)
    # where the framework's own epsilon is the spec's there is nothing to turn back
    assert default[("lightning", "epsilon")].why == "lightning's own Adam epsilon is the spec's"
    assert in_keras[("keras", "epsilon")].why == "keras's own Adam epsilon is the spec's"
    sgd = arms_by(plan_arms(THREE, ("epsilon",), ModelSpec(), TrainSpec(optimizer="sgd"), 2))
    assert all(not sgd[(n, "epsilon")].runs for n in THREE)
    assert sgd[("keras", "epsilon")].why == "not applicable: the run uses sgd, not Adam"


def test_padding_runs_only_where_a_framework_would_place_it_otherwise() -> None:
    frameworks = ("numpy", "keras", "lightning", "pytorch")
    seed = arms_by(plan_arms(frameworks, ("padding",), ModelSpec(), TrainSpec(), threads=2))
    for name in frameworks:
        arm = seed[(name, "padding")]
        assert not arm.runs and arm.why.startswith("not applicable"), arm
    strided, _ = apply_overrides(ModelSpec(), TrainSpec(), STRIDED_SAME)
    found = arms_by(plan_arms(frameworks, ("padding",), strided, TrainSpec(), threads=2))
    for name in ("lightning", "pytorch"):
        arm = found[(name, "padding")]
        assert arm.runs and arm.native == ("padding",) and arm.init == "shared"
    for name in ("numpy", "keras"):
        arm = found[(name, "padding")]
        assert not arm.runs
        assert arm.why == f"{name} places this spec's 'same' padding as the spec does"
    # 'same' with stride 1: PyTorch's padding='same' is the spec's placement
    stride_one, _ = apply_overrides(ModelSpec(), TrainSpec(), ["conv.0.padding=same"])
    found = arms_by(plan_arms(("pytorch",), ("padding",), stride_one, TrainSpec(), threads=2))
    assert not found[("pytorch", "padding")].runs


def test_threads_is_a_noise_floor_only_with_more_than_one_core() -> None:
    many = arms_by(plan_arms(("keras",), ("threads", "ulp"), ModelSpec(), TrainSpec(), 4))
    assert many[("keras", "threads")].runs and many[("keras", "threads")].threads == 1
    assert many[("keras", "ulp")].runs and many[("keras", "ulp")].init == "shared-ulp"
    one = arms_by(plan_arms(("keras",), ("threads", "ulp"), ModelSpec(), TrainSpec(), 1))
    assert not one[("keras", "threads")].runs
    assert one[("keras", "threads")].why == "the run already uses one thread"
    assert one[("keras", "ulp")].runs


def test_check_factors() -> None:
    assert check_factors(["init", "threads", "init"]) == ("init", "threads")
    with pytest.raises(UserError) as info:
        check_factors(["init", "nope"])
    assert "nope" in info.value.message
    assert all(factor in info.value.hint for factor in FACTORS)


# ----------------------------------------------------------------------------- ablation_stats

SEEDS = [0, 1, 2, 3, 4]
N_TEST = 10_000
BASE_CORRECT = [9800, 9812, 9795, 9808, 9803]  # test images right, per seed
BASE_LOSS = [0.070, 0.068, 0.072, 0.069, 0.071]
# factor -> (change in correct images per seed, change in loss per seed)
CHANGES = {
    "init": ([-210, -190, -205, -200, -195], [0.050, 0.047, 0.052, 0.049, 0.051]),
    # a small, steady shift: significant by itself, but inside the floors' noise band
    "epsilon": ([1, 1, 1, 1, 2], [1e-5, 1e-5, 1e-5, 1e-5, 2e-5]),
    "threads": ([3, -2, 1, -3, 2], [1e-4, -1e-4, 5e-5, -5e-5, 0.0]),
    "ulp": ([-2, 2, 0, 3, -1], [-5e-5, 1e-4, 0.0, 5e-5, -1e-4]),
}
ARMS = [
    Arm("lightning", BASELINE, True),
    Arm("lightning", "init", True, init="native"),
    Arm("lightning", "epsilon", True, native=("optimizer",)),
    Arm("lightning", "padding", False, "not applicable: the spec has no 'same' padding"),
    Arm("lightning", "threads", True, threads=1),
    Arm("lightning", "ulp", True, init="shared-ulp"),
]


def write_run(folder: Path, factor: str, seed: int, correct: int, loss: float) -> None:
    """A finished run of ``factor`` on ``seed``: ``correct`` of N_TEST test images right."""
    y_test = np.arange(N_TEST) % 10
    y_pred = y_test.copy()
    y_pred[correct:] = (y_test[correct:] + 1) % 10
    result = finish_result(
        framework="lightning",
        backend="torch",
        device="cpu",
        versions={},
        dataset="mnist",
        class_names=[str(i) for i in range(10)],
        model_spec=ModelSpec(),
        train_spec=TrainSpec(epochs=1, seed=seed),
        init="shared",
        history=[EpochRecord(1, 0.3, 0.9, 0.2, 0.95, 1.0)],
        step_losses=[0.5, 0.3],
        test_loss=loss,
        y_test=y_test,
        y_pred=y_pred,
        n_train=2000,
        wall_time_s=2.0,
    )
    path = folder / RUNS_DIR / "lightning" / f"{factor}-seed{seed}"
    path.mkdir(parents=True)
    result.to_json(path / RESULT_FILE)


def outcomes(factor: str) -> tuple[dict[int, float], dict[int, float]]:
    """{seed: accuracy}, {seed: loss} of one arm as written."""
    correct, loss = CHANGES.get(factor, ([0] * 5, [0.0] * 5))
    return (
        {s: (BASE_CORRECT[s] + correct[s]) / N_TEST for s in SEEDS},
        {s: BASE_LOSS[s] + loss[s] for s in SEEDS},
    )


@pytest.fixture()
def fake_ablation(tmp_path: Path) -> dict[str, Any]:
    for factor in (BASELINE, *CHANGES):
        accuracy, loss = outcomes(factor)
        for seed in SEEDS:
            write_run(tmp_path, factor, seed, round(accuracy[seed] * N_TEST), loss[seed])
    return summarize(tmp_path, ARMS, SEEDS)


def test_effects_are_paired_differences_from_the_baseline(fake_ablation: dict) -> None:
    rows = {row["factor"]: row for row in fake_ablation["effects"]}
    assert list(rows) == ["init", "epsilon", "padding", "threads", "ulp"]  # no baseline row
    assert fake_ablation["seeds"] == SEEDS
    base_acc, base_loss = outcomes(BASELINE)
    for factor in CHANGES:
        acc, loss = outcomes(factor)
        for metric, arm, base in (("accuracy", acc, base_acc), ("loss", loss, base_loss)):
            expected = compare_samples(arm, base)
            effect = rows[factor][metric]
            assert effect["test"] == "paired t-test" and effect["n"] == 5
            assert effect["difference"] == pytest.approx(expected.difference, abs=1e-12)
            assert effect["low"] == pytest.approx(expected.low, abs=1e-12)
            assert effect["high"] == pytest.approx(expected.high, abs=1e-12)
    assert rows["init"]["accuracy"]["difference"] == pytest.approx(-0.02)
    assert rows["init"]["loss"]["difference"] == pytest.approx(0.0498)


def test_noise_band_is_the_largest_bound_of_the_floors(fake_ablation: dict) -> None:
    rows = {row["factor"]: row for row in fake_ablation["effects"]}
    for metric in ("accuracy", "loss"):
        bound = max(
            abs(rows[floor][metric][side])
            for floor in ("threads", "ulp")
            for side in ("low", "high")
        )
        assert rows["init"]["noise_band"][metric] == pytest.approx(bound)
    assert noise_bands(fake_ablation["effects"]) == {"lightning": rows["init"]["noise_band"]}
    assert 0 < rows["init"]["noise_band"]["accuracy"] < 0.001


def test_a_big_effect_is_real_and_a_small_one_inside_the_band_is_equivalent(
    fake_ablation: dict,
) -> None:
    rows = {row["factor"]: row for row in fake_ablation["effects"]}
    init = rows["init"]
    assert init["verdicts"] == {"accuracy": REAL, "loss": REAL}
    assert init["verdict"] == f"{REAL} (accuracy and loss)"
    epsilon = rows["epsilon"]
    # the paired test alone would call it real; it lies within the noise floors' band, and
    # TOST puts it within the margins (0.5 points, 0.02 nats)
    assert epsilon["accuracy"]["p_value"] < 0.05 and epsilon["loss"]["p_value"] < 0.05
    assert abs(epsilon["accuracy"]["difference"]) < epsilon["noise_band"]["accuracy"]
    assert epsilon["verdicts"] == {"accuracy": EQUIVALENT, "loss": EQUIVALENT}
    assert epsilon["verdict"] == EQUIVALENT
    # the factors' four tests are one family, corrected; the noise floors' are not in it
    for factor in ("init", "epsilon"):
        for metric in ("accuracy", "loss"):
            effect = rows[factor][metric]
            assert effect["p_adjusted"] >= effect["p_value"]
    assert rows["threads"]["accuracy"]["p_adjusted"] == rows["threads"]["accuracy"]["p_value"]
    assert fake_ablation["margin"] == {"accuracy": 0.5, "loss": 0.02}
    assert "Benjamini-Hochberg" in fake_ablation["rule"]
    for floor in ("threads", "ulp"):
        assert rows[floor]["verdict"] == "noise floor"
    padding = rows["padding"]
    assert not padding["runs"] and padding["verdict"] == "not run"
    assert "accuracy" not in padding and padding["why"].startswith("not applicable")


def test_an_arm_with_fewer_than_two_finished_seeds_has_too_few(tmp_path: Path) -> None:
    for seed in SEEDS:
        write_run(tmp_path, BASELINE, seed, BASE_CORRECT[seed], BASE_LOSS[seed])
    write_run(tmp_path, "init", 0, 9600, 0.12)  # one seed of the arm finished
    summary = summarize(tmp_path, ARMS[:2], SEEDS)
    (row,) = summary["effects"]
    assert math.isnan(row["accuracy"]["difference"]) and row["accuracy"]["n"] == 1
    assert row["verdicts"] == {"accuracy": "too few seeds", "loss": "too few seeds"}


@pytest.mark.parametrize(
    ("verdicts", "said"),
    [
        ({"accuracy": REAL, "loss": REAL}, f"{REAL} (accuracy and loss)"),
        (
            {"accuracy": f"{INCONCLUSIVE} (12 seeds)", "loss": REAL},
            f"{REAL} (loss); accuracy: {INCONCLUSIVE} (12 seeds)",
        ),
        ({"accuracy": EQUIVALENT, "loss": EQUIVALENT}, EQUIVALENT),
        (
            {"accuracy": EQUIVALENT, "loss": f"{INCONCLUSIVE} (7 seeds)"},
            f"accuracy: {EQUIVALENT}; loss: {INCONCLUSIVE} (7 seeds)",
        ),
    ],
)
def test_a_rows_one_phrase_hides_neither_metric(verdicts: dict, said: str) -> None:
    assert row_verdict({"runs": 3, "verdicts": verdicts}) == said
    assert row_verdict({"runs": 0, "verdicts": {}}) == "not run"


# ----------------------------------------------------------------------------- the command

ABLATE = ["--frameworks", "lightning", "--factors", "init,threads", "--seeds", "3"]
ABLATE += ["--epochs", "1", "--subset", "2000", "--threads", "2", "--quiet"]


def cnn_compare(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "compare", *args],
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "CNN_DATA_DIR": str(data_dir)},
    )


@pytest.fixture(scope="module")
def ablation(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict[str, Any]:
    """One real ablation of Lightning's initialisers against the threads noise floor."""
    out = tmp_path_factory.mktemp("ablate")
    result = cnn_compare(data_dir, "ablate", *ABLATE, "--out", str(out))
    return {"out": out, "result": result}


@pytest.mark.slow
def test_init_is_a_real_difference_and_threads_a_noise_floor(ablation: dict) -> None:
    out, result = ablation["out"], ablation["result"]
    assert result.returncode == 0, result.stdout + result.stderr
    runs = sorted((out / ABLATION_DIR / RUNS_DIR / "lightning").glob(f"*/{RESULT_FILE}"))
    assert [p.parent.name for p in runs] == [
        f"{factor}-seed{seed}" for factor in ("baseline", "init", "threads") for seed in (0, 1, 2)
    ]
    init_run = RunResult.from_json(out / ABLATION_DIR / RUNS_DIR / "lightning/init-seed0/run.json")
    base_run = RunResult.from_json(runs[0])
    assert init_run.init == "native" and base_run.init == "shared"
    summary = json.loads((out / ABLATION_FILE).read_text())
    rows = {row["factor"]: row for row in summary["effects"]}
    assert list(rows) == ["init", "threads"] and summary["seeds"] == [0, 1, 2]
    init, threads = rows["init"], rows["threads"]
    assert init["verdicts"]["loss"] == REAL and init["verdict"].startswith(REAL)
    assert init["loss"]["p_value"] < 0.05 and init["loss"]["test"] == "paired t-test"
    assert threads["verdict"] == "noise floor"
    floor = max(abs(threads["accuracy"]["low"]), abs(threads["accuracy"]["high"]))
    effect = max(abs(init["loss"]["difference"]), abs(init["accuracy"]["difference"]))
    assert floor < 0.1 * effect, (floor, effect)
    # the printed table
    lines = result.stdout.splitlines()
    assert any(line.startswith("ablate: 9 training runs to do") for line in lines)
    init_line = next(line for line in lines if line.split()[:2] == ["lightning", "init"])
    assert REAL in init_line
    threads_line = next(line for line in lines if line.split()[:2] == ["lightning", "threads"])
    assert "noise floor" in threads_line
    # the report: the ablation section and its forest plot
    markdown = (out / "report.md").read_text()
    assert "## What causes it: the ablation" in markdown
    assert "figures/ablation.png" in markdown
    assert (out / "figures" / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text()
    assert "What causes it: the ablation" in html and "id='ablation-figure'" in html
    check_self_contained(out)  # the figure embedded as a PNG data URI, nothing external


@pytest.mark.slow
def test_resume_does_nothing_new_and_refuses_another_configuration(
    ablation: dict, data_dir: Path
) -> None:
    out = ablation["out"]
    assert ablation["result"].returncode == 0, ablation["result"].stderr
    records = sorted((out / ABLATION_DIR / RUNS_DIR).rglob(RESULT_FILE))
    before = {path: path.stat().st_mtime_ns for path in records}
    result = cnn_compare(data_dir, "ablate", *ABLATE, "--out", str(out), "--resume")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ablate: 0 training runs to do (9 in all")
    assert {path: path.stat().st_mtime_ns for path in records} == before
    changed = [*ABLATE, "--out", str(out), "--resume", "--subset", "3000"]
    result = cnn_compare(data_dir, "ablate", *changed)
    assert result.returncode == 2
    assert "holds an ablation of another configuration (differs in: subset)" in result.stderr
    assert "Traceback" not in result.stderr
    result = cnn_compare(data_dir, "ablate", *ABLATE, "--out", str(out))  # no --resume
    assert result.returncode == 2 and "already holds ablation runs" in result.stderr
    assert {path: path.stat().st_mtime_ns for path in records} == before


def test_an_unknown_factor_exits_2_listing_the_factors(tmp_path: Path, data_dir: Path) -> None:
    result = cnn_compare(data_dir, "ablate", "--factors", "nope", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "cnn-compare: error: unknown factor(s): 'nope'" in result.stderr
    assert all(factor in result.stderr for factor in FACTORS)
    assert "Traceback" not in result.stderr
    assert not (tmp_path / ABLATION_DIR).exists()
