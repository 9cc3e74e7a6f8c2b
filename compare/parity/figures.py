"""The divergence locator's figure: per pair of frameworks, a layers x steps heatmap."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from compare.parity.locate import STAGES
from compare.report.figures import save_figure


def _heatmap_rows(parity: dict[str, Any], pair: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Row labels (stage and layer), log10 relative differences (rows x steps) and which
    cells are past tolerance, for one pair."""
    rows = [r for r in parity["rows"] if r["pair"] == pair]
    layers = list(dict.fromkeys(r["layer"] for r in rows if r["phase"] == "forward"))
    labels = [f"{stage} {layer}" for stage in STAGES for layer in layers]
    steps = parity["steps"] + 1
    values = np.full((len(labels), steps), np.nan)
    past = np.zeros((len(labels), steps), dtype=bool)
    for r in rows:
        i = labels.index(f"{r['phase']} {r['layer']}")
        value = math.log10(max(r["value"], 1e-17))
        if math.isnan(values[i, r["step"]]) or value > values[i, r["step"]]:
            values[i, r["step"]] = value
        past[i, r["step"]] |= not r["ok"]
    return labels, values, past


def fig_parity(parity: dict[str, Any], path: Path) -> Path | None:
    """Per pair of frameworks, a layers x steps heatmap of log10 relative difference (forward
    outputs, backward gradients, updates), cells past tolerance outlined."""
    pairs = list(dict.fromkeys(r["pair"] for r in parity["rows"]))
    if not pairs:
        return None
    cols = min(3, len(pairs))
    grid = math.ceil(len(pairs) / cols)
    fig = Figure(figsize=(4.6 * cols, 5.2 * grid))
    axes = np.atleast_1d(fig.subplots(grid, cols, squeeze=False)).ravel()
    shown = None
    for ax, pair in zip(axes, pairs, strict=False):
        labels, values, past = _heatmap_rows(parity, pair)
        shown = ax.imshow(values, aspect="auto", cmap="magma", vmin=-17, vmax=0)
        for i, j in zip(*np.nonzero(past), strict=True):
            ax.add_patch(
                Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#00e5ff", linewidth=1.5)
            )
        ax.set_yticks(range(len(labels)), labels, fontsize=6)
        ax.set_xticks(range(values.shape[1]))
        ax.set_xlabel("step (updates: the step that made them)")
        departure = parity["departures"].get(pair)
        ax.set_title(
            f"{pair}\n" + ("agree" if departure is None else f"departs: {departure['where']}"),
            fontsize=8,
        )
    for ax in axes[len(pairs) :]:
        ax.axis("off")
    if shown is not None:
        fig.colorbar(shown, ax=list(axes[: len(pairs)]), label="log10 relative difference")
    return save_figure(fig, path)
