"""The report's ablation section: what each framework default causes, and how much."""

from __future__ import annotations

from pathlib import Path

from compare.ablate.figures import fig_forest
from compare.engine.layout import ABLATION_FIGURE
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
    return [
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
