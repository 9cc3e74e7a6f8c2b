"""The report's ablation section: what each framework default causes, and how much."""

from __future__ import annotations

from pathlib import Path

from compare.ablate.figures import fig_forest
from compare.engine.layout import ABLATION_FIGURE
from compare.report.collect import Collected
from compare.report.render import FigureFile, Section
from compare.report.tables import interval_text
from compare.stats.section import VERDICT_COLUMNS


def ablation_sections(found: Collected, figures_dir: Path) -> list[Section]:
    """Each default's measured effect (``ablation.json``), as a table and a forest plot."""
    ablation = found.ablation
    if not ablation:
        return []
    rows = []
    for row in ablation["effects"]:
        if not row["runs"]:
            rows.append([row["framework"], row["factor"], *["-"] * 7, row["why"]])
            continue
        acc, loss = row["accuracy"], row["loss"]
        rows.append(
            [
                row["framework"],
                row["factor"],
                interval_text(acc["difference"], acc["low"], acc["high"], 100, "+.3f"),
                f"{acc['p_value']:.3g}",
                f"{acc.get('p_adjusted', acc['p_value']):.3g}",
                row["verdicts"]["accuracy"],
                interval_text(loss["difference"], loss["low"], loss["high"], 1, "+.4f"),
                f"{loss['p_value']:.3g}",
                f"{loss.get('p_adjusted', loss['p_value']):.3g}",
                row["verdicts"]["loss"],
            ]
        )
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
