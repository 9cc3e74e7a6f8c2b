"""The report's ablation section: what each framework default causes, and how much."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compare.ablate.figures import fig_forest, fig_waterfall
from compare.engine.layout import ABLATION_FIGURE, CUMULATIVE_FIGURE
from compare.report.collect import Collected
from compare.report.render import FigureFile, Section
from compare.stats.pairs import METRICS
from compare.stats.section import VERDICT_COLUMNS, metric_cells


def ablation_sections(found: Collected, figures_dir: Path) -> list[Section]:
    """Each default's measured effect (``ablation.json``), as a table and a forest plot."""
    ablation = found.ablation
    if not ablation:
        return []
    rows = []
    for row in ablation["effects"]:
        if not row["runs"]:
            blank = ["-"] * (len(VERDICT_COLUMNS) - 1)
            rows.append([row["framework"], row["factor"], *blank, row["why"]])
            continue
        cells = [row["framework"], row["factor"]]
        for metric in METRICS:
            effect = row[metric]
            cells += metric_cells(metric, effect["difference"], effect["low"], effect["high"],
                                  effect["p_value"], effect.get("p_adjusted", effect["p_value"]),
                                  row["verdicts"][metric])  # fmt: skip
        rows.append(cells)
    figure = fig_forest(ablation, figures_dir / ABLATION_FIGURE)
    text = (
        f"Each arm turns one default back to the framework's own, on seeds "
        f"{', '.join(map(str, ablation['seeds']))}, paired by seed with the baseline (every "
        f"difference neutralised). Rule: {ablation['rule']}."
    )
    figures = (
        [
            FigureFile(
                "ablation-figure",
                "Effects with 95% intervals (filled: real difference; grey: the noise band)",
                figure,
            )
        ]
        if figure
        else []
    )
    sections = [
        Section(
            "What causes it: the ablation",
            text,
            [
                "framework",
                "factor",
                *VERDICT_COLUMNS,
            ],
            rows,
            figures,
        )
    ]
    if "cumulative" in ablation:
        sections.append(cumulative_section(ablation["cumulative"], figures_dir))
    return sections


def cumulative_section(cumulative: dict[str, Any], figures_dir: Path) -> Section:
    """The cumulative mode: the gap at every stage, then what each step closed."""
    a, b = cumulative["frameworks"]
    rows = []
    for stage in cumulative["stages"]:
        title = "all native" if not stage["aligned"] else f"+ {stage['aligned'][-1]} aligned"
        rows.append([f"gap at stage {stage['stage']}", title, *_cells(stage)])
    for step in cumulative["steps"]:
        rows.append(["closed by aligning", step["topic"], *_cells(step)])
    figure = fig_waterfall(cumulative, figures_dir / CUMULATIVE_FIGURE)
    text = (
        f"{a} and {b} as their users write them (stage 0: every topic with the framework's "
        f"own convention), then one topic aligned to the spec at a time, in this order: "
        f"{', '.join(cumulative['topics'])}. Seeds {', '.join(map(str, cumulative['seeds']))}. "
        f"Rule: {cumulative['rule']}."
    )
    caption = "The gap at each stage (95% intervals) and each step (filled: real difference)"
    figures = [FigureFile("cumulative-figure", caption, figure)] if figure else []
    return Section(
        f"Closing the gap: {a} against {b}, one topic at a time",
        text,
        ["", "stage or topic", *VERDICT_COLUMNS],
        rows,
        figures,
    )


def _cells(row: dict[str, Any]) -> list[str]:
    cells: list[str] = []
    for metric in METRICS:
        effect = row[metric]
        cells += metric_cells(metric, effect["difference"], effect["low"], effect["high"],
                              effect["p_value"], effect.get("p_adjusted", effect["p_value"]),
                              effect["verdict"])  # fmt: skip
    return cells
