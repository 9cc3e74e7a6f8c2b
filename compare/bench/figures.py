"""The bench's figure: each framework's training step stacked by phase."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from cnn_common.phases import LABELS, PHASES
from compare.report.figures import save_figure


def fig_phases(phases: dict[str, dict[str, float]], path: Path) -> Path | None:
    """One horizontal bar per framework (``{label: {phase: ms}}``, top to bottom): the
    milliseconds of a training step stacked by phase in ``cnn_common.phases.PHASES`` order, the
    total at the end; a framework without phases is left out. None when none has phases."""
    bars = {name: ms for name, ms in phases.items() if ms}
    if not bars:
        return None
    names = list(bars)
    colors = colormaps["Set2"].colors  # a phase keeps its colour in every figure
    fig = Figure(figsize=(9, 1.2 + 0.45 * len(names)))
    ax = fig.subplots()
    left = np.zeros(len(names))
    for i, phase in enumerate(PHASES):
        if not any(phase in ms for ms in bars.values()):
            continue
        widths = np.array([bars[name].get(phase, 0.0) for name in names])
        color = colors[i % len(colors)]
        ax.barh(range(len(names)), widths, left=left, color=color, label=LABELS[phase])
        left += widths
    for position, total in enumerate(left):
        ax.text(total, position, f" {total:.2f}", va="center", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("ms per training step")
    ax.set_xlim(0, 1.12 * left.max())
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return save_figure(fig, path)
