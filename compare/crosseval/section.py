"""The report's cross-evaluation section: each framework's trained weights run in every
framework."""

from __future__ import annotations

from pathlib import Path

from compare.crosseval.figures import fig_crosseval
from compare.engine.layout import CROSSEVAL_FIGURE
from compare.report.collect import Collected
from compare.report.render import FigureFile, Section


def crosseval_sections(found: Collected, figures_dir: Path) -> list[Section]:
    """The same weights in every framework (``crosseval.json``): the predictions that differ."""
    crosseval = found.crosseval
    if not crosseval:
        return []
    cases = crosseval["cases"]
    rows = [
        [
            c["weights"],
            c["evaluated_in"],
            str(c["image"]),
            f"{c['own_prediction']} -> {c['prediction']} (true {c['label']})",
            f"{c['margin']:.2e}",
            "near-tie" if c["near_tie"] else "NOT a near-tie",
        ]
        for c in cases
    ]
    if cases:
        text = (
            f"The seed-{crosseval['seed']} weights of each framework, run in every framework. "
            f"{len(cases)} prediction(s) differ from the training framework's own; a near-tie "
            f"is a margin between the two highest logits below {crosseval['near_tie']:g} of "
            "the largest: " + ("all are." if crosseval["all_near_ties"] else "NOT all are.")
        )
    else:
        text = (
            f"The seed-{crosseval['seed']} weights of each framework, run in every framework: "
            "every prediction is the same everywhere."
        )
    figure = fig_crosseval(crosseval, figures_dir / CROSSEVAL_FIGURE)
    return [
        Section(
            "The same weights everywhere: cross-evaluation",
            text,
            ["trained in", "run in", "test image", "prediction", "margin", "why"] if rows else (),
            rows,
            [
                FigureFile(
                    "crosseval-figure",
                    "Each framework's trained weights (rows) run in every framework (columns)",
                    figure,
                )
            ],
        )
    ]
