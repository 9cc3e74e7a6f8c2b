"""The report's statistics sections: each framework's mean over seeds with its 95% interval,
and each pair's difference with its test, p-value and verdict; a note below three seeds.

The fast tests use made-up run records (as test_report.py builds them) with known outcomes;
the slow one trains for real and checks the same sections on what came out.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from scipy import stats as scipy_stats

from cnn_common.results import RunResult
from compare.engine.layout import RESULT_FILE, RESULTS_FILE, run_dir
from compare.report.outputs import write_outputs
from compare.stats.inference import EQUIVALENT, INCONCLUSIVE, REAL
from tests.compare.test_report import make_results

TITLE = "## Is the difference real?"
PAIRS_TITLE = "## Pairwise differences"
SEEDS = (0, 1, 2)
# Per-seed test accuracy and loss. keras is worse by ~2 points and ~0.03 nats on every seed
# (a real difference); lightning moves by less than a tenth of a point (equivalent within the
# default margins, 0.5 points and 0.02 nats).
ACCURACY = {
    "numpy": [0.981, 0.984, 0.979],
    "keras": [0.961, 0.963, 0.960],
    "lightning": [0.982, 0.9825, 0.9798],
}
LOSS = {
    "numpy": [0.060, 0.055, 0.065],
    "keras": [0.090, 0.086, 0.094],
    "lightning": [0.059, 0.0562, 0.0653],
}
INTERVAL = re.compile(r"([-+]?[\d.]+) \[([-+]?[\d.]+), ([-+]?[\d.]+)\]")


def section_table(markdown: str, title: str) -> list[dict[str, str]]:
    """The rows of the Markdown table under ``## title``, as dicts by column header; a header
    that appears twice (the pairs' "p" and "p adj.") is "... (accuracy)" then "... (loss)"."""
    text = markdown.split(title + "\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in text.splitlines() if line.startswith("|")]
    split = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]
    head, rows = split[0], split[2:]  # split[1] is the |---| line
    for name in {h for h in head if head.count(h) == 2}:
        first = head.index(name)
        head[first] = f"{name} (accuracy)"
        head[head.index(name)] = f"{name} (loss)"
    return [dict(zip(head, row, strict=True)) for row in rows]


def interval(cell: str) -> tuple[float, float, float]:
    """``"80.27 [73.99, 86.54] %"`` -> (80.27, 73.99, 86.54)."""
    match = INTERVAL.search(cell)
    assert match, cell
    return float(match[1]), float(match[2]), float(match[3])


def by_hand(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95% Student's t interval."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = scipy_stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def fake_outcomes(out: Path) -> None:
    """Three seeds of numpy, keras and lightning with the outcomes above."""
    make_results(out, seeds=len(SEEDS))
    for framework in ACCURACY:
        for seed in SEEDS:
            path = run_dir(out, framework, seed) / RESULT_FILE
            run = RunResult.from_json(path)
            run.test_accuracy = ACCURACY[framework][seed]
            run.test_loss = LOSS[framework][seed]
            run.to_json(path)


def test_three_seeds_give_intervals_and_verdicts(tmp_path: Path) -> None:
    fake_outcomes(tmp_path)
    write_outputs(tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    means = {row["framework"]: row for row in section_table(markdown, TITLE)}
    assert list(means) == ["numpy", "keras", "lightning"]
    for framework, row in means.items():
        assert row["seeds"] == "3"
        acc, acc_low, acc_high = by_hand(ACCURACY[framework])
        assert row["test accuracy [95% CI]"] == (
            f"{100 * acc:.2f} [{100 * acc_low:.2f}, {100 * acc_high:.2f}] %"
        )
        loss, loss_low, loss_high = by_hand(LOSS[framework])
        assert row["test loss [95% CI]"] == f"{loss:.4f} [{loss_low:.4f}, {loss_high:.4f}]"
    pairs = {row["pair"]: row for row in section_table(markdown, PAIRS_TITLE)}
    assert list(pairs) == ["numpy − keras", "numpy − lightning", "keras − lightning"]
    for row in pairs.values():
        assert row["test"] == "paired t-test"  # every framework ran seeds 0, 1, 2
    # keras is worse on every seed: real, on both metrics, with the interval where it should be
    for pair, sign in (("numpy − keras", 1), ("keras − lightning", -1)):
        row = pairs[pair]
        assert (row["verdict (accuracy)"], row["verdict (loss)"]) == (REAL, REAL)
        low, high = interval(row["Δ accuracy (points)"])[1:]
        assert sign * low > 0 and sign * high > 0  # the interval excludes 0
        assert float(row["p (accuracy)"]) < 0.05 and float(row["p (loss)"]) < 0.05
        assert float(row["p adj. (accuracy)"]) >= float(row["p (accuracy)"])
    diffs = [a - b for a, b in zip(ACCURACY["numpy"], ACCURACY["keras"], strict=True)]
    mean, low, high = by_hand(diffs)
    assert pairs["numpy − keras"]["Δ accuracy (points)"] == (
        f"{100 * mean:+.3f} [{100 * low:+.3f}, {100 * high:+.3f}]"
    )
    same = pairs["numpy − lightning"]
    assert same["verdict (accuracy)"] == f"{EQUIVALENT} within ±0.5 points"
    assert same["verdict (loss)"] == f"{EQUIVALENT} within ±0.02 nats"
    acc_low, acc_high = interval(same["Δ accuracy (points)"])[1:]
    assert acc_low < 0 < acc_high
    assert float(same["p (accuracy)"]) >= 0.05 and float(same["p (loss)"]) >= 0.05
    section = markdown.split(PAIRS_TITLE, 1)[1]
    assert "Benjamini-Hochberg" in section and "TOST" in section
    assert "To resolve the inconclusive pairs" not in section  # none is
    assert (tmp_path / "figures" / "forest.png").stat().st_size > 10_000
    html = (tmp_path / "report.html").read_text()
    assert "Is the difference real?" in html and "Pairwise differences" in html
    # results.json holds the same judgement, every figure of it
    record = json.loads((tmp_path / RESULTS_FILE).read_text())["pairwise"]
    assert record["correction"] == "Benjamini-Hochberg" and record["level"] == 0.05
    assert record["margin"] == {"accuracy": 0.5, "loss": 0.02}
    saved = {f"{p['a']} − {p['b']}": p for p in record["pairs"]}
    assert list(saved) == list(pairs)
    for name, row in pairs.items():
        for metric in ("accuracy", "loss"):
            result = saved[name][metric]
            assert row[f"verdict ({metric})"].startswith(result["verdict"])
            assert row[f"p adj. ({metric})"] == f"{result['p_adjusted']:.3g}"
            assert result["test"] == "paired t-test" and result["n"] == 3
    assert saved["numpy − lightning"]["accuracy"]["within_margin"]
    assert saved["numpy − keras"]["accuracy"]["seeds_needed"] is None  # resolved


def test_a_scattered_pair_is_inconclusive_with_the_seeds_and_the_command(tmp_path: Path) -> None:
    """lightning scattered by a point from seed to seed: neither a difference nor within half
    a point; the verdict says how many seeds would settle it, the text how to run them."""
    fake_outcomes(tmp_path)
    for seed, accuracy in zip(SEEDS, (0.970, 0.990, 0.975), strict=True):
        path = run_dir(tmp_path, "lightning", seed) / RESULT_FILE
        run = RunResult.from_json(path)
        run.test_accuracy = accuracy
        run.to_json(path)
    write_outputs(tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    pairs = {row["pair"]: row for row in section_table(markdown, PAIRS_TITLE)}
    verdict = pairs["numpy − lightning"]["verdict (accuracy)"]
    found = re.fullmatch(r"inconclusive \((\d+) seeds\)", verdict)
    assert found, verdict
    assert int(found[1]) > 3
    command = re.search(r"`(cnn-compare run --resume --out \S+ --seeds auto:(\d+))`", markdown)
    assert command, markdown
    assert int(command[2]) >= int(found[1])  # the rounds split the level: at least as many
    record = json.loads((tmp_path / RESULTS_FILE).read_text())["pairwise"]
    (saved,) = [p for p in record["pairs"] if (p["a"], p["b"]) == ("numpy", "lightning")]
    assert saved["accuracy"]["verdict"] == "inconclusive"
    assert saved["accuracy"]["seeds_needed"] == int(found[1])


@pytest.mark.parametrize("seeds", [1, 2])
def test_fewer_than_three_seeds_say_what_statistics_need(tmp_path: Path, seeds: int) -> None:
    make_results(tmp_path, seeds=seeds)
    write_outputs(tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    section = markdown.split(TITLE + "\n", 1)[1].split("\n## ", 1)[0]
    assert "Statistics need at least 3 seeds per framework" in section
    assert f"(this folder has {seeds})" in section and "--seeds 3" in section
    assert "|" not in section  # no table of intervals
    assert PAIRS_TITLE not in markdown
    assert json.loads((tmp_path / RESULTS_FILE).read_text())["pairwise"] is None


@pytest.mark.slow
def test_a_real_run_of_three_seeds_reports_statistics(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "compare", "run", "--frameworks", "numpy,lightning"]
        + ["--seeds", "3", "--subset", "5000", "--epochs", "1", "--eval-subset", "2000"]
        + ["--quiet", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "CNN_DATA_DIR": str(data_dir)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    runs = json.loads((out / RESULTS_FILE).read_text())["runs"]
    for name in ("numpy", "lightning"):
        seeds = sorted(r["train_spec"]["seed"] for r in runs if r["framework"] == name)
        assert seeds == [0, 1, 2], name
    markdown = (out / "report.md").read_text()
    means = {row["framework"]: row for row in section_table(markdown, TITLE)}
    assert list(means) == ["numpy", "lightning"]
    for name, row in means.items():
        assert row["seeds"] == "3"
        mine = [r for r in runs if r["framework"] == name]
        for cell, scale, shown, values in (  # shown: the rounding of the report's cell
            (row["test accuracy [95% CI]"], 100, 0.006, [r["test_accuracy"] for r in mine]),
            (row["test loss [95% CI]"], 1, 6e-5, [r["test_loss"] for r in mine]),
        ):
            mean, low, high = interval(cell)
            assert all(math.isfinite(v) for v in (mean, low, high)), cell
            assert low <= mean <= high, cell
            expected = by_hand(values)  # the record's numbers, rounded as the report shows
            assert mean == pytest.approx(scale * expected[0], abs=shown), cell
            assert low == pytest.approx(scale * expected[1], abs=shown), cell
            assert high == pytest.approx(scale * expected[2], abs=shown), cell
    (pair,) = section_table(markdown, PAIRS_TITLE)
    assert pair["pair"] == "numpy − lightning" and pair["test"] == "paired t-test"
    verdicts = (REAL, EQUIVALENT, INCONCLUSIVE)
    assert pair["verdict (accuracy)"].startswith(verdicts), pair
    assert pair["verdict (loss)"].startswith(verdicts), pair
    for cell in (pair["Δ accuracy (points)"], pair["Δ loss (nats)"]):
        mean, low, high = interval(cell)
        assert math.isfinite(low) and math.isfinite(high) and low <= mean <= high
    for column in ("p (accuracy)", "p (loss)"):
        assert 0 <= float(pair[column]) <= 1, pair
