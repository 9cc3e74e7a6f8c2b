"""The ablation's figure: each default's effect with its 95% interval (a forest plot)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from compare.report.figures import save_figure, styles


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


def fig_waterfall(cumulative: dict[str, Any], path: Path) -> Path | None:
    """The cumulative mode: the gap between two frameworks with everything native, what each
    aligned topic closed (a floating bar from the gap before to the gap after, filled where
    the step is a real difference), and the gap with everything aligned; 95% intervals on the
    gaps."""
    stages, steps = cumulative["stages"], cumulative["steps"]
    if not stages or not all(math.isfinite(s["accuracy"]["difference"]) for s in stages):
        return None
    a, b = cumulative["frameworks"]
    names = ["all native", *(f"+ {step['topic']}" for step in steps)]
    fig = Figure(figsize=(max(7.0, 1.0 + 0.9 * len(names)), 6.5), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True)
    for ax, metric, scale, unit in (
        (axes[0], "accuracy", 100.0, "points"),
        (axes[1], "loss", 1.0, "nats"),
    ):
        gaps = [scale * stage[metric]["difference"] for stage in stages]
        for k, step in enumerate(steps):
            real = step[metric]["verdict"] == "real difference"
            ax.bar(
                k + 1,
                gaps[k + 1] - gaps[k],
                bottom=gaps[k],
                width=0.6,
                color="#4c72b0" if real else "white",
                edgecolor="#4c72b0",
            )
        low = [scale * stage[metric]["low"] for stage in stages]
        high = [scale * stage[metric]["high"] for stage in stages]
        positions = range(len(stages))
        ax.errorbar(
            positions,
            gaps,
            yerr=[[g - lo for g, lo in zip(gaps, low, strict=True)],
                  [hi - g for g, hi in zip(gaps, high, strict=True)]],
            fmt="o",
            color="black",
            capsize=4,
        )  # fmt: skip
        ax.step(positions, gaps, where="post", color="grey", linewidth=0.6)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_ylabel(f"{metric} gap {a} - {b} ({unit})")
        ax.grid(axis="y", alpha=0.3)
    axes[1].set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    fig.suptitle(
        "Aligning one topic at a time: the gap after each step, with 95% intervals "
        "(filled bar: the step is a real difference)",
        fontsize=10,
    )
    return save_figure(fig, path)
