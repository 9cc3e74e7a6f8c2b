"""The figures of the analysis sections: the ablation's forest plot, the parity heatmaps, the
cross-evaluation matrices and the bench's training step by phase. Each draws from the JSON
record its command left in the folder, so ``cnn-compare report`` draws them again without the
frameworks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from cnn_common.phases import LABELS as STEP_LABELS
from cnn_common.phases import PHASES as STEP_PHASES
from compare.figures import save_figure, styles
from compare.locate import PHASES


def fig_forest(ablation: dict[str, Any], path: Path) -> Path | None:
    """Each factor's effect on test accuracy and loss with its 95% interval, one marker per
    framework, the noise floors shaded below the line."""
    rows = [row for row in ablation["effects"] if row["runs"]]
    if not rows:
        return None
    frameworks = list(dict.fromkeys(row["framework"] for row in rows))
    factors = list(dict.fromkeys(row["factor"] for row in rows))
    look = styles(frameworks)
    fig = Figure(figsize=(11, 1.4 + 0.55 * len(factors) * len(frameworks)), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    labels = []
    for position, (factor, framework) in enumerate((f, fw) for f in factors for fw in frameworks):
        labels.append(f"{factor} — {framework}")
        row = next((r for r in rows if r["factor"] == factor and r["framework"] == framework), None)
        if row is None:
            continue
        for ax, metric, scale in ((axes[0], "accuracy", 100.0), (axes[1], "loss", 1.0)):
            effect = row[metric]
            if not math.isfinite(effect["difference"]):
                continue
            mean = scale * effect["difference"]
            low, high = scale * effect["low"], scale * effect["high"]
            real = row["verdicts"].get(metric) == "real difference"
            ax.errorbar(
                mean,
                position,
                xerr=[[mean - low], [high - mean]],
                fmt=look[framework].marker,
                color=look[framework].color,
                markerfacecolor=look[framework].color if real else "white",
                capsize=3,
            )
            band = row["noise_band"].get(metric)
            if band and factor not in ("threads", "ulp"):
                ax.fill_betweenx(
                    [position - 0.4, position + 0.4], -scale * band, scale * band,
                    color="#bbbbbb", alpha=0.4, linewidth=0,
                )  # fmt: skip
    for ax, title in zip(axes, ("test accuracy effect (points)", "test loss effect"), strict=True):
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(labels)), labels, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle("Effect of each default against the neutralised baseline", fontsize=10)
    return save_figure(fig, path)


def _heatmap_rows(parity: dict[str, Any], pair: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Row labels (phase and layer), log10 relative differences (rows x steps) and which
    cells are past tolerance, for one pair."""
    rows = [r for r in parity["rows"] if r["pair"] == pair]
    layers = list(dict.fromkeys(r["layer"] for r in rows if r["phase"] == "forward"))
    labels = [f"{phase} {layer}" for phase in PHASES for layer in layers]
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
    for i, phase in enumerate(STEP_PHASES):
        if not any(phase in ms for ms in bars.values()):
            continue
        widths = np.array([bars[name].get(phase, 0.0) for name in names])
        color = colors[i % len(colors)]
        ax.barh(range(len(names)), widths, left=left, color=color, label=STEP_LABELS[phase])
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
