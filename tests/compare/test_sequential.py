"""``cnn-compare run --seeds auto:MAX`` and ``--margin``: the seeds in rounds, each look at a
level split over the looks planned, the plan kept by the folder, and the margins a folder is
analysed with (changed by ``--resume`` or ``cnn-compare report --margin``)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from cnn_common.errors import UserError
from cnn_common.results import RunResult
from compare.engine.layout import CONFIG_FILE, RESULT_FILE, run_dir
from compare.report.collect import collect
from compare.run.command import RunOptions
from compare.run.rounds import Seeds, next_round, seed_plan, seeds_argument
from compare.stats.inference import look_alpha
from compare.stats.margins import Margins, parse_margin
from compare.stats.pairs import pairwise, resolve_text, runs_by_framework
from tests.compare.test_ablate import cnn_compare
from tests.compare.test_report import make_results
from tests.compare.test_statistics_report import ACCURACY, LOSS


def test_seeds_are_a_count_or_auto_with_a_most() -> None:
    assert seeds_argument("4") == Seeds(4)
    assert seeds_argument("auto:12") == Seeds(12, auto=True)
    for bad in ("auto:2", "auto:", "auto:x", "many"):
        with pytest.raises(argparse.ArgumentTypeError):
            seeds_argument(bad)


def plan(seeds: str, saved: dict | None = None) -> tuple[int, int]:
    args = argparse.Namespace(seeds=seeds_argument(seeds), out=Path("OUT"))
    return seed_plan(args, saved or {})


def test_the_plan_of_seeds_fresh_resumed_and_turned_into_rounds() -> None:
    assert plan("5") == (5, 0)
    assert plan("auto:20") == (20, 3)
    assert plan("1", {"seeds": 4}) == (4, 0)  # --resume keeps the folder's
    assert plan("auto:20", {"seeds": 4}) == (20, 4)  # its four seeds are the first round
    rounds = {"seeds": 20, "sequential": {"first": 4, "max": 20, "looks": 5}}
    assert plan("1", rounds) == (20, 4)
    assert plan("auto:20", rounds) == (20, 4)
    with pytest.raises(UserError, match="already runs its seeds in rounds up to 20"):
        plan("auto:30", rounds)  # a new plan after looking would spoil the level
    with pytest.raises(UserError, match="already has 4 seeds"):
        plan("auto:4", {"seeds": 4})


def test_the_options_record_the_plan_and_the_margin() -> None:
    from cnn_common.spec import ModelSpec, TrainSpec

    options = RunOptions(
        model_spec=ModelSpec(), train_spec=TrainSpec(), out=Path("x"), seeds=20, first_seeds=3
    )
    assert options.rounds == [3, 5, 8, 12, 18, 20]
    config = options.config()
    assert config["sequential"] == {"first": 3, "max": 20, "looks": 6}
    assert config["margin"] == {"accuracy": 0.5, "loss": 0.02}
    fixed = RunOptions(model_spec=ModelSpec(), train_spec=TrainSpec(), out=Path("x"), seeds=4)
    assert fixed.rounds == [4] and "sequential" not in fixed.config()


def test_rounds_of_seeds_need_a_pair_of_frameworks(tmp_path: Path, data_dir: Path) -> None:
    done = cnn_compare(data_dir, "run", "--frameworks", "numpy", "--seeds", "auto:5",
                       "--out", str(tmp_path / "out"))  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "numpy alone makes no pair" in done.stderr and "fix: give two or more" in done.stderr
    assert not (tmp_path / "out").exists()


def test_margins_parse_and_refuse_clearly() -> None:
    assert parse_margin("accuracy=0.3") == Margins(0.3, 0.02)
    assert parse_margin("loss=0.01, accuracy=1") == Margins(1.0, 0.01)
    assert parse_margin("accuracy=0.2", Margins(1.0, 0.05)) == Margins(0.2, 0.05)
    for bad, said in (
        ("acc=1", "cannot read 'acc=1'"),
        ("accuracy", "cannot read 'accuracy'"),
        ("accuracy=x", "is not a number"),
        ("loss=-1", "must be a positive number"),
        ("loss=0", "must be a positive number"),
    ):
        with pytest.raises(UserError, match=said):
            parse_margin(bad)


def outcomes(out: Path, accuracy: dict[str, list[float]]) -> None:
    """Three fake frameworks on ``len(list)`` seeds with these test accuracies (and LOSS's
    losses, repeated)."""
    seeds = len(next(iter(accuracy.values())))
    make_results(out, seeds=seeds)
    for framework, values in accuracy.items():
        for seed, value in enumerate(values):
            path = run_dir(out, framework, seed) / RESULT_FILE
            run = RunResult.from_json(path)
            run.test_accuracy, run.test_loss = value, LOSS[framework][seed % 3]
            run.to_json(path)


def options_for(out: Path, most: int) -> RunOptions:
    from cnn_common.spec import ModelSpec, TrainSpec

    return RunOptions(
        frameworks=("numpy", "keras", "lightning"),
        model_spec=ModelSpec(),
        train_spec=TrainSpec(),
        out=out,
        seeds=most,
        first_seeds=3,
    )


def test_a_look_with_every_pair_resolved_ends_the_rounds(tmp_path: Path) -> None:
    # keras 2 points below numpy; lightning a hundredth of a point above it on every seed
    close = {**ACCURACY, "lightning": [0.9811, 0.9840, 0.9791]}
    outcomes(tmp_path, close)
    said: list[str] = []
    assert next_round(tmp_path, options_for(tmp_path, 20).rounds, Margins(), 3, said.append) is None
    (line,) = said
    assert line.startswith("look after 3 seeds (level 0.00833, 6 looks planned)")
    assert line.endswith("every pair resolved")


def test_an_inconclusive_look_plans_the_next_round_from_the_schedule(tmp_path: Path) -> None:
    scattered = {**ACCURACY, "lightning": [0.970, 0.990, 0.975]}
    outcomes(tmp_path, scattered)
    said: list[str] = []
    options = options_for(tmp_path, 20)
    following = next_round(tmp_path, options.rounds, Margins(), 3, said.append)
    assert following in options.rounds and following > 3
    assert "inconclusive numpy − lightning, keras − lightning" in said[0]
    assert said[0].endswith(f"next round up to {following} seeds")
    # the most caps the rounds: with auto:5 the next round is 5 whatever the need
    assert next_round(tmp_path, options_for(tmp_path, 5).rounds, Margins(), 3, said.append) == 5
    assert look_alpha(len(options_for(tmp_path, 5).rounds)) == pytest.approx(0.025)


def test_once_the_planned_rounds_are_spent_fresh_seeds_are_what_resolves(tmp_path: Path) -> None:
    scattered = {**ACCURACY, "lightning": [0.970, 0.990, 0.975]}
    outcomes(tmp_path, scattered)
    pairs = pairwise(runs_by_framework(collect(tmp_path).runs), Margins())
    fixed = resolve_text(tmp_path, pairs, 3, {"train": {"seed": 0}})
    assert fixed is not None and f"--resume --out {tmp_path} --seeds auto:" in fixed
    spent = {"train": {"seed": 10}, "sequential": {"first": 3, "max": 8, "looks": 3}}
    text = resolve_text(tmp_path, pairs, 8, spent)
    assert text is not None and text.startswith("The 8 seeds planned did not resolve")
    assert "`--seed 18 --seeds auto:" in text and "--resume" not in text
    assert resolve_text(tmp_path, [], 3, {}) is None


SMALL = ["--frameworks", "numpy,pytorch", "--subset", "256", "--eval-subset", "256"]
SMALL += ["--epochs", "1", "--init", "native", "--in-process", "--quiet"]


def test_a_run_in_rounds_then_its_margins_changed(tmp_path: Path, data_dir: Path) -> None:
    """Margins too small to show equivalence: the rounds go on until a pair is resolved or
    the most is reached, the log and the runs agree, and the report states the split level.
    Then the folder is analysed again with wide margins: the verdicts follow, nothing
    trains."""
    out = tmp_path / "out"
    tiny = "accuracy=0.001,loss=0.00001"
    done = cnn_compare(data_dir, "run", *SMALL, "--seeds", "auto:5", "--margin", tiny,
                       "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    config = json.loads((out / CONFIG_FILE).read_text())
    assert config["sequential"] == {"first": 3, "max": 5, "looks": 2}
    assert config["margin"] == {"accuracy": 0.001, "loss": 0.00001}
    look = next(line for line in done.stdout.splitlines() if line.startswith("look after 3"))
    seeds = sorted(p.name for p in (out / "runs").iterdir())
    if "every pair resolved" in look:
        assert seeds == [f"{fw}-seed{s}" for fw in ("numpy", "pytorch") for s in range(3)]
    else:
        assert "next round up to 5 seeds" in look
        assert seeds == [f"{fw}-seed{s}" for fw in ("numpy", "pytorch") for s in range(5)]
    markdown = (out / "report.md").read_text()
    assert "split over the 2 looks planned (Bonferroni), 0.025 each" in markdown
    assert re.search(r"^pairs \(0\.025 level", done.stdout, re.M), done.stdout
    pair = next(line for line in done.stdout.splitlines() if "numpy − pytorch" in line)
    if "inconclusive" in pair:  # margins far below the spread: no count of seeds would do
        assert "cannot be resolved by seeds alone at this margin" in done.stdout
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob(RESULT_FILE)}
    wide = cnn_compare(data_dir, "report", str(out), "--margin", "accuracy=50,loss=50")
    assert wide.returncode == 0, wide.stdout + wide.stderr
    assert json.loads((out / CONFIG_FILE).read_text())["margin"] == {"accuracy": 50, "loss": 50}
    pair = next(line for line in wide.stdout.splitlines() if "numpy − pytorch" in line)
    assert "inconclusive" not in pair, pair  # within 50 points or clearly apart
    assert before == {p: p.stat().st_mtime_ns for p in (out / "runs").rglob(RESULT_FILE)}
