"""The report's answer to "is the difference real?": each framework's mean over seeds with its
95% interval, and each pair's difference with its interval, p-value and verdict
(``compare.stats.inference``)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path
from typing import Any

from compare.report.collect import Collected
from compare.report.render import Section
from compare.report.tables import interval_text
from compare.stats.inference import MIN_SEEDS, compare_samples, mean_interval


def statistics_sections(found: Collected, figures_dir: Path) -> list[Section]:
    """Means and pairwise differences over seeds; a note when there are fewer than three."""
    by_framework: dict[str, dict[int, Any]] = defaultdict(dict)
    for run in found.runs:
        by_framework[run.framework][int(run.train_spec["seed"])] = run
    if not by_framework:
        return []
    fewest = min(len(runs) for runs in by_framework.values())
    title = "Is the difference real?"
    if fewest < MIN_SEEDS:
        text = (
            f"Statistics need at least {MIN_SEEDS} seeds per framework (this folder has "
            f"{fewest}): run with --seeds {MIN_SEEDS} or more for 95% intervals and a verdict "
            "on each pair."
        )
        return [Section(title, text)]
    means = []
    for name, runs in by_framework.items():
        acc = mean_interval([r.test_accuracy for r in runs.values()])
        loss = mean_interval([r.test_loss for r in runs.values()])
        means.append(
            [
                name,
                str(acc.n),
                interval_text(acc.mean, acc.low, acc.high, 100, ".2f") + " %",
                interval_text(loss.mean, loss.low, loss.high, 1, ".4f"),
            ]
        )
    pairs = []
    for a, b in itertools.combinations(by_framework, 2):
        cells = [f"{a} − {b}"]
        verdicts = []
        for field, scale, fmt in (("test_accuracy", 100, "+.3f"), ("test_loss", 1, "+.4f")):
            result = compare_samples(
                {s: getattr(r, field) for s, r in by_framework[a].items()},
                {s: getattr(r, field) for s, r in by_framework[b].items()},
            )
            cells += [
                interval_text(result.difference, result.low, result.high, scale, fmt),
                f"{result.p_value:.3g}",
            ]
            verdicts.append(result.verdict)
            test = result.test
        cells += [test, *verdicts]
        pairs.append(cells)
    text = (
        "Mean over seeds with its 95% Student's t interval. Differences between two "
        "frameworks: paired t-test on the per-seed differences when both ran the same seeds "
        "(each seed fixes the batch order, split and, with shared init, the starting "
        "weights), Welch's t-test otherwise; a real difference has p < 0.05."
    )
    return [
        Section(
            title,
            text,
            ["framework", "seeds", "test accuracy [95% CI]", "test loss [95% CI]"],
            means,
        ),
        Section(
            "Pairwise differences",
            "Accuracy in points, loss in nats; [95% interval of the mean difference].",
            [
                "pair",
                "Δ accuracy",
                "p",
                "Δ loss",
                "p",
                "test",
                "verdict (accuracy)",
                "verdict (loss)",
            ],
            pairs,
        ),
    ]
