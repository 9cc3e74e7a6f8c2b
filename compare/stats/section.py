"""The report's answer to "is the difference real?": each framework's mean over seeds with its
95% interval; each pair's difference with its interval, raw and adjusted p-values and one of
three verdicts (``compare.stats.inference``) against the stated margins; a forest plot of
every pair against the margin band; the command that would resolve what is inconclusive."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from compare.report.collect import Collected
from compare.report.figures import save_figure
from compare.report.render import FigureFile, Section
from compare.report.tables import interval_text
from compare.stats.inference import (
    CORRECTION,
    EQUIVALENT,
    INCONCLUSIVE,
    MIN_SEEDS,
    REAL,
    mean_interval,
)
from compare.stats.margins import Margins
from compare.stats.pairs import (
    METRICS,
    Pair,
    judge,
    judge_runs,
    resolve_text,
    runs_by_framework,
    verdict_text,
)

FOREST_FILE = "forest.png"
COLOURS = {REAL: "#d62728", EQUIVALENT: "#2ca02c", INCONCLUSIVE: "#7f7f7f"}
# Each metric's difference [interval], its p-values and its verdict: the columns of every
# table of verdicts (the pairs here, the ablation's factors).
VERDICT_COLUMNS = [
    *("Δ accuracy (points)", "p", "p adj.", "verdict (accuracy)"),
    *("Δ loss (nats)", "p", "p adj.", "verdict (loss)"),
]
SCALE = {"accuracy": (100, "+.3f", "points"), "loss": (1, "+.4f", "nats")}


def metric_cells(
    metric: str,
    difference: float,
    low: float,
    high: float,
    p: float,
    p_adjusted: float,
    verdict: str,
) -> list[str]:
    """One metric's four cells of ``VERDICT_COLUMNS``: the difference [interval] in the
    metric's unit, p, p adj. and the verdict."""
    scale, fmt, _ = SCALE[metric]
    return [interval_text(difference, low, high, scale, fmt), f"{p:.3g}", f"{p_adjusted:.3g}",
            verdict]  # fmt: skip


def rule_text(margins: Margins, alpha: float, config: dict[str, Any], tests: int) -> str:
    """How the verdicts were reached, in one paragraph."""
    looks = (config.get("sequential") or {}).get("looks", 1)
    split = (
        f" The seeds ran in rounds with a look at the verdicts after each: the 5% level is "
        f"split over the {looks} looks planned (Bonferroni), {alpha:.4g} each."
        if looks > 1
        else ""
    )
    return (
        "Differences between two frameworks: paired t-test on the per-seed differences when "
        "both ran the same seeds (each seed fixes the batch order, split and, with shared "
        "init, the starting weights), Welch's t-test otherwise; [95% interval of the mean "
        "difference]. **Real difference**: the test rejects no difference. **Equivalent**: "
        f"two one-sided tests (TOST) show the difference within the margin, "
        f"{margins.text('accuracy')} of accuracy and {margins.text('loss')} of loss (the "
        "defaults are the spread a reseed of one framework causes; `--margin` changes them). "
        "**Inconclusive**: neither, with the seeds that would give TOST 80% power from the "
        f"observed spread. The {tests} tests of the table form one family: p-values are "
        f"adjusted by {CORRECTION} (false discovery rate at 5%), the difference tests and "
        f"the equivalence tests each; the verdicts read the adjusted ones (p adj.).{split}"
    )


def forest_plot(pairs: list[Pair], margins: Margins, path: Path) -> Path:
    """Each pair's difference with its 95% interval (thin) and 90% interval (thick, the one
    TOST reads) against the shaded margin band, one panel per metric, coloured by verdict."""
    fig = Figure(figsize=(10, 0.45 * len(pairs) + 1.6))
    axes = fig.subplots(1, len(METRICS), sharey=True)
    rows = list(range(len(pairs)))[::-1]
    for ax, metric in zip(axes, METRICS, strict=True):
        scale, _, unit = SCALE[metric]
        band = margins.of(metric) * scale
        ax.axvspan(-band, band, color="#2ca02c", alpha=0.12)
        ax.axvline(0, color="black", lw=0.8)
        for y, pair in zip(rows, pairs, strict=True):
            r = pair.results[metric]
            colour = COLOURS[r.verdict]
            ax.plot([scale * r.low, scale * r.high], [y, y], color=colour, lw=1.2)
            half = (r.high - r.low) / 2 * _ninety_over_ninety_five(r.n, r.test)
            ax.plot([scale * (r.difference - half), scale * (r.difference + half)], [y, y],
                    color=colour, lw=4, solid_capstyle="butt")  # fmt: skip
            ax.plot([scale * r.difference], [y], "o", color=colour, ms=5)
        ax.set_title(
            f"test {metric} ({unit})\nshaded: the margin, {margins.text(metric)}", fontsize=10
        )
        ax.grid(axis="x", alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))  # wide loss labels must not touch
        ax.set_ylim(-0.6, len(pairs) - 0.4)
    axes[0].set_yticks(rows, [p.name for p in pairs])
    handles = [axes[0].plot([], [], color=c, lw=4)[0] for c in COLOURS.values()]
    labels = [*COLOURS, "thin: 95% interval, thick: 90% (TOST's)"]
    handles.append(axes[0].plot([], [], color="black", lw=0)[0])
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, -0.02))  # fmt: skip
    fig.subplots_adjust(bottom=0.75 / fig.get_figheight(), wspace=0.08)
    return save_figure(fig, path)


def _ninety_over_ninety_five(n: int, test: str) -> float:
    """The 90% interval's half-width over the 95% one's: the ratio of their t quantiles
    (Welch's degrees of freedom taken as 2n - 2; the plot is a picture of the table)."""
    from scipy import stats

    df = max(1, n - 1 if test == "paired t-test" else 2 * n - 2)
    return float(stats.t.ppf(0.95, df) / stats.t.ppf(0.975, df))


def statistics_sections(found: Collected, figures_dir: Path) -> list[Section]:
    """Means and pairwise verdicts over seeds; a note when there are fewer than three."""
    by_framework = runs_by_framework(found.runs)
    if not by_framework:
        return []
    fewest = min(len(runs) for runs in by_framework.values())
    title = "Is the difference real?"
    if fewest < MIN_SEEDS:
        text = (
            f"Statistics need at least {MIN_SEEDS} seeds per framework (this folder has "
            f"{fewest}): run with --seeds {MIN_SEEDS} or more (or --seeds auto:MAX) for 95% "
            "intervals and a verdict on each pair."
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
    pairs, margins, alpha = judge(by_framework, found.config)
    rows = []
    for pair in pairs:
        cells = [pair.name, pair.results["accuracy"].test]
        for metric in METRICS:
            r = pair.results[metric]
            cells += metric_cells(metric, r.difference, r.low, r.high, r.p_value, r.p_adjusted,
                                  verdict_text(r, margins, metric))  # fmt: skip
        rows.append(cells)
    text = "Mean over seeds with its 95% Student's t interval."
    pair_text = rule_text(margins, alpha, found.config, 2 * len(pairs))
    resolve = resolve_text(found.out, pairs, fewest, found.config)
    if resolve:
        pair_text += f"\n\n{resolve}"
    figure = forest_plot(pairs, margins, figures_dir / FOREST_FILE)
    return [
        Section(
            title,
            text,
            ["framework", "seeds", "test accuracy [95% CI]", "test loss [95% CI]"],
            means,
        ),
        Section(
            "Pairwise differences",
            pair_text,
            [
                "pair",
                "test",
                *VERDICT_COLUMNS,
            ],
            rows,
            figures=[
                FigureFile(
                    "forest",
                    "Every pair's difference against the margin band: inside it and "
                    "narrow enough is equivalent, clear of zero is real, the rest is "
                    "inconclusive.",
                    figure,
                )
            ],
        ),
    ]


def summary_lines(found: Collected) -> list[str]:
    """The pairs' verdicts for the terminal, as the report's table and forest plot give them;
    nothing below three seeds a framework."""
    judged = judge_runs(found.runs, found.config)
    if judged is None:
        return []
    pairs, margins, alpha = judged
    lines = [
        f"pairs ({alpha:.3g} level, {CORRECTION}-adjusted; equivalent within "
        f"{margins.text('accuracy')}, {margins.text('loss')}):"
    ]
    width = max(len(p.name) for p in pairs)
    for pair in pairs:
        parts = []
        for metric in METRICS:
            r = pair.results[metric]
            scale, fmt, unit = SCALE[metric]
            said = verdict_text(r, margins, metric, margin=False)
            parts.append(f"{metric} {scale * r.difference:{fmt}} {unit}: {said}")
        lines.append(f"  {pair.name:<{width}}  " + "; ".join(parts))
    fewest = min(len(r) for r in runs_by_framework(found.runs).values())
    resolve = resolve_text(found.out, pairs, fewest, found.config)
    if resolve:
        lines.append(f"  {resolve}".replace("`", ""))
    return lines
