"""The report's divergence-locator section: where each pair of frameworks first parts."""

from __future__ import annotations

from pathlib import Path

from compare.engine.layout import PARITY_FIGURE
from compare.parity.figures import fig_parity
from compare.report.collect import Collected
from compare.report.render import FigureFile, Section


def parity_sections(found: Collected, figures_dir: Path) -> list[Section]:
    """Where each pair first parts (``parity.json``), and the heatmaps."""
    parity = found.parity
    if not parity:
        return []
    rows = []
    for pair, departure in parity["departures"].items():
        if departure is None:
            rows.append([pair, "agree within tolerance", "", ""])
            continue
        rows.append(
            [
                pair,
                departure["where"],
                f"{departure['value']:.3g} > {departure['tolerance']:g}",
                departure.get("cause") or "",
            ]
        )
    figure = fig_parity(parity, figures_dir / PARITY_FIGURE)
    text = (
        f"{parity['steps']} step(s) from shared weights on the shared batches, "
        f"{parity['dtype']}, {parity['optimizer']}: every layer's forward output, every "
        "gradient (of each layer's input and weights) and every update, compared in the order "
        f"the computation runs. Tolerances (relative): {parity['tolerances']}."
    )
    figures = [
        FigureFile(
            "parity-figure",
            "log10 of the relative difference per layer and step (darkest: identical; white: "
            "no such quantity, as a layer without weights has no update; outlined: past "
            "tolerance)",
            figure,
        )
    ]
    return [
        Section(
            "Where it starts: the divergence locator",
            text,
            ["pair", "first departure", "relative difference", "known cause"],
            rows,
            figures if figure else [],
        )
    ]
