"""The cross-evaluation's figure: each framework's weights run in every framework."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from compare.report.figures import save_figure


def fig_crosseval(crosseval: dict[str, Any], path: Path) -> Path:
    """Two matrices: test accuracy of each framework's weights (rows) run in each framework
    (columns), and how many predictions differ from the training framework's own."""
    names = crosseval["frameworks"]
    sources = list(crosseval["accuracy"])
    acc = np.array([[100 * crosseval["accuracy"][s][e] for e in names] for s in sources])
    differ = np.array([[crosseval["differ"][s][e] for e in names] for s in sources])
    fig = Figure(figsize=(5 + 1.1 * len(names), 1.4 + 0.55 * len(sources)), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, matrix, title, fmt in (
        (axes[0], acc, "test accuracy (%)", "{:.2f}"),
        (axes[1], differ, "predictions differing from the trainer's own", "{:d}"),
    ):
        shown = ax.imshow(matrix, cmap="Blues" if matrix is acc else "Oranges", aspect="auto")
        for i in range(len(sources)):
            for j in range(len(names)):
                dark = shown.norm(matrix[i, j]) > 0.6  # white text where the cell is dark
                ax.text(
                    j, i, fmt.format(matrix[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if dark else "black",
                )  # fmt: skip
        ax.set_xticks(range(len(names)), names, rotation=30, fontsize=8)
        ax.set_yticks(range(len(sources)), sources, fontsize=8)
        ax.set_xlabel("run in")
        ax.set_title(title, fontsize=9)
    axes[0].set_ylabel("trained in")
    return save_figure(fig, path)
