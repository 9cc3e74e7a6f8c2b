"""What every figure of the report shares: one style per framework and the atomic PNG write.

Figures are drawn on ``matplotlib.figure.Figure`` objects, never through pyplot: no global
backend or figure registry, so nothing is left open and no display is needed. A framework's
colour, marker and line width come from its position in the registry (unknown names after
it), so every framework keeps its look from one report to the next.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import NamedTuple

from matplotlib import colormaps
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from cnn_common.files import atomic_write_bytes
from compare.engine import registry

# Frameworks trained from shared weights often draw the same line: each gets its own marker and,
# within a figure, its own width, widest first, so lines lying on top of each other stay visible.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
WIDEST, THINNEST = 3.5, 1.0
PALETTE = colormaps["tab10"].colors


class Style(NamedTuple):
    color: str  # "#1f77b4"
    marker: str
    width: float


def styles(names: list[str]) -> dict[str, Style]:
    """A distinct style per framework of one figure. Colour and marker follow the position in
    the registry (unknown names after it, alphabetically), so a framework keeps them from one
    report to the next; colours repeat after ten, markers after eight, so the first forty
    positions differ. Widths go from widest to thinnest in that order within ``names``."""
    positions = list(registry.frameworks()) + sorted(set(names) - set(registry.frameworks()))
    ranked = sorted(names, key=positions.index)
    step = (WIDEST - THINNEST) / max(len(ranked) - 1, 1)
    found = {}
    for name in names:
        i = positions.index(name)
        width = WIDEST - step * ranked.index(name)
        found[name] = Style(to_hex(PALETTE[i % len(PALETTE)]), MARKERS[i % len(MARKERS)], width)
    return found


def save_figure(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG, atomically; return ``path``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())
    return path
