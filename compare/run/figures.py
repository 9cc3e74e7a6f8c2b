"""The runs' figures in the report: each drawn from a ``Collected``, written to
``OUT/figures/*.png`` atomically (``compare.report.figures``), and returned with its caption.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from cnn_common.weights import load_weights, weight_names
from compare.engine.layout import (
    CLASS_F1_FIGURE,
    CONFUSION_FIGURE,
    CURVES_FIGURE,
    FEATURE_MAPS_FIGURE,
    FEATURES_FILE,
    FIGURES_DIR,
    FILTERS_FIGURE,
    MISCLASSIFIED_FIGURE,
    STEP_LOSS_FIGURE,
    WEIGHTS_FILE,
)
from compare.report.collect import Collected
from compare.report.figures import Style, save_figure, styles
from compare.report.render import FigureFile

CAPTIONS = {
    "curves": "Training (solid) and validation (dashed) loss and accuracy per epoch",
    "step_loss": "Per-step training loss",
    "confusion": "Confusion matrices (test set)",
    "class_f1": "Per-class F1 (test set)",
    "feature_maps": (
        "Feature maps of every conv, pooling, batchnorm and add layer for the same test image"
    ),
    "filters": "Learned first-layer filters",
    "misclassified": "Misclassified test images (predicted / true)",
}

FeatureMaps = list[tuple[str, dict[str, np.ndarray]]]  # (framework, feature_maps.npz arrays)


def _framework_styles(found: Collected) -> dict[str, Style]:
    return styles(list(dict.fromkeys(run.framework for run in found.runs)))


def fig_curves(found: Collected, path: Path) -> Path:
    """Training and validation loss and accuracy per epoch, every run on one pair of axes."""
    style = _framework_styles(found)
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    for run in found.runs:
        epochs = [h.epoch for h in run.history]
        look = style[run.framework]
        label = run.framework + (
            "" if found.config.get("seeds", 1) == 1 else f" s{run.train_spec['seed']}"
        )
        series = [
            (axes[0], [h.train_loss for h in run.history], "-", "train"),
            (axes[0], [h.val_loss for h in run.history], "--", "val"),
            (axes[1], [100 * h.train_accuracy for h in run.history], "-", "train"),
            (axes[1], [100 * h.val_accuracy for h in run.history], "--", "val"),
        ]
        for ax, values, line, part in series:
            ax.plot(
                epochs,
                values,
                line,
                marker=look.marker,
                color=look.color,
                linewidth=look.width,
                markersize=2 + 2 * look.width,
                alpha=0.8,
                label=f"{label} {part}",
            )
    for ax, title in zip(axes, ["loss per epoch", "accuracy per epoch (%)"], strict=True):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def fig_step_loss(found: Collected, path: Path) -> Path:
    """Every training step's loss, overlaid, with a moving average over 50 steps (a tenth of
    the steps for a short run); below, each framework's distance from the first one's."""
    style = _framework_styles(found)
    runs = [run for run, _ in found.first_seeds()]
    fig = Figure(figsize=(11, 6.5))
    axes = fig.subplots(2, 1, height_ratios=[2, 1], sharex=True)
    longest = max((len(run.step_losses) for run in runs), default=0)
    window = max(1, min(50, longest // 10))
    for run in runs:
        losses = np.asarray(run.step_losses)
        look = style[run.framework]
        axes[0].plot(losses, color=look.color, alpha=0.2, linewidth=0.5)
        width = min(window, len(losses))
        smooth = np.convolve(losses, np.ones(width) / width, mode="valid")
        axes[0].plot(
            np.arange(width - 1, len(losses)),
            smooth,
            color=look.color,
            linewidth=look.width,
            alpha=0.8,
            label=run.framework,
        )
    # Lines on top of each other say "equal" only to the eye: plot the gaps too.
    if len(runs) > 1:
        ref = np.asarray(runs[0].step_losses)
        for run in runs[1:]:
            other = np.asarray(run.step_losses)
            n = min(len(ref), len(other))
            axes[1].plot(
                np.abs(other[:n] - ref[:n]) + 1e-12,
                color=style[run.framework].color,
                linewidth=0.6,
                label=f"|{run.framework} - {runs[0].framework}|",
            )
        axes[1].set_yscale("log")
        axes[1].set_ylabel("|loss difference|")
        axes[1].legend(fontsize=8)
        axes[1].grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("loss (log scale)")
    axes[0].set_title(f"per-step training loss (faint: every step; solid: {window}-step mean)")
    axes[0].grid(alpha=0.3)
    axes[0].legend()
    axes[-1].set_xlabel("training step")
    return save_figure(fig, path)


def fig_confusion(found: Collected, path: Path) -> Path:
    """One confusion matrix per framework (log-scaled colours, counts written in)."""
    runs = [run for run, _ in found.first_seeds()]
    fig = Figure(figsize=(4.6 * len(runs), 4.4))
    axes = fig.subplots(1, len(runs), squeeze=False)
    for ax, run in zip(axes[0], runs, strict=True):
        cm = np.asarray(run.confusion_matrix)
        ax.imshow(np.log1p(cm), cmap="Blues")
        k = len(cm)
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    color = "white" if i == j else "black"
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=6, color=color)
        ax.set_title(f"{run.framework}: {100 * run.test_accuracy:.2f} %")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_xticks(range(k))
        ax.set_yticks(range(k))
    return save_figure(fig, path)


def fig_class_f1(found: Collected, path: Path) -> Path:
    """Per-class F1 as grouped bars, one bar per framework."""
    style = _framework_styles(found)
    runs = [run for run, _ in found.first_seeds()]
    names = runs[0].class_names
    fig = Figure(figsize=(11, 3.6))
    ax = fig.subplots()
    width = 0.8 / len(runs)
    for i, run in enumerate(runs):
        f1 = [run.class_report[name]["f1"] for name in names]
        x = np.arange(len(names)) + i * width
        ax.bar(x, f1, width, label=run.framework, color=style[run.framework].color)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2)
    ax.set_xticklabels(names, fontsize=8)
    low = min(run.class_report[n]["f1"] for run in runs for n in names)
    ax.set_ylim(max(0.0, low - 0.02), 1.0)
    ax.set_title("per-class F1")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def mosaic(maps: np.ndarray) -> np.ndarray:
    """``(H, W, C)`` -> one 2-D image of the C channels tiled in a near-square grid, a NaN
    line between tiles: ``(rows * (H + 1) - 1, cols * (W + 1) - 1)``."""
    h, w, c = maps.shape
    # Columns: the smallest divisor of C not below sqrt(C) (16 -> 4x4, 32 -> 4x8), so the grid
    # has no holes, unless that makes it too wide.
    cols = next(d for d in range(math.ceil(math.sqrt(c)), c + 1) if c % d == 0)
    if cols > 2 * math.sqrt(c):
        cols = math.ceil(math.sqrt(c))
    rows = math.ceil(c / cols)
    tile = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), np.nan)
    for i in range(c):
        r, q = divmod(i, cols)
        tile[r * (h + 1) : r * (h + 1) + h, q * (w + 1) : q * (w + 1) + w] = maps[:, :, i]
    return tile


def load_feature_maps(found: Collected) -> FeatureMaps:
    """The feature-map archives of each framework's first run, where the worker wrote one."""
    loaded = []
    for run, path in found.first_seeds():
        if (path / FEATURES_FILE).is_file():
            with np.load(path / FEATURES_FILE) as npz:
                loaded.append((run.framework, {k: npz[k] for k in npz.files}))
    return loaded


def fig_feature_maps(loaded: FeatureMaps, path: Path, shared: bool) -> Path | None:
    """Every feature map's layer (``cnn_common.spec.feature_map_layers``) for test image 0:
    one column per framework, and the
    largest pairwise difference as a heatmap when the run started from shared weights (from
    native ones the maps differ anyway)."""
    if not loaded:
        return None
    layer_names = [k.split("/", 1)[1] for k in loaded[0][1] if k.startswith("map/")]
    cols = len(loaded) + (1 if shared and len(loaded) > 1 else 0) + 1
    row_height = 3.0 if len(layer_names) <= 8 else 2.2  # a residual network has dozens
    fig = Figure(figsize=(3.2 * cols, row_height * len(layer_names)))
    axes = fig.subplots(len(layer_names), cols, squeeze=False)
    image = loaded[0][1]["images"][0, :, :, 0]
    for row, layer in enumerate(layer_names):
        if row == 0:
            axes[row, 0].imshow(image, cmap="gray")
            axes[row, 0].set_title("test image 0")
        else:
            axes[row, 0].axis("off")
            centre = {"ha": "center", "va": "center", "transform": axes[row, 0].transAxes}
            axes[row, 0].text(0.5, 0.5, layer, fontsize=14, **centre)
        stack = []
        for col, (framework, arrays) in enumerate(loaded, start=1):
            maps = arrays[f"map/{layer}"][0]  # (N, H, W, C) -> (H, W, C) of image 0
            stack.append(maps)
            axes[row, col].imshow(mosaic(maps), cmap="viridis")
            axes[row, col].set_title(f"{framework} {layer} {maps.shape}", fontsize=8)
        if cols > len(loaded) + 1:
            diff = np.max(
                [np.abs(a - b) for i, a in enumerate(stack) for b in stack[i + 1 :]], axis=0
            )
            shown = axes[row, -1].imshow(mosaic(diff), cmap="magma")
            axes[row, -1].set_title(f"max |difference| (max {np.nanmax(diff):.2g})", fontsize=8)
            fig.colorbar(shown, ax=axes[row, -1], fraction=0.046)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    return save_figure(fig, path)


def fig_filters(found: Collected, path: Path) -> Path | None:
    """The learned kernels of the first convolution (input channel 0), one panel per
    framework."""
    kernels = []
    for run, run_path in found.first_seeds():
        if (run_path / WEIGHTS_FILE).is_file():
            weights, model, _ = load_weights(run_path / WEIGHTS_FILE)
            first = next(
                (n for n in weight_names(model) if n.endswith(".kernel") and weights[n].ndim == 4),
                None,
            )
            if first is not None:
                kernels.append((run.framework, first, weights[first]))
    if not kernels:
        return None
    fig = Figure(figsize=(4 * len(kernels), 4))
    axes = fig.subplots(1, len(kernels), squeeze=False)
    for ax, (framework, name, kernel) in zip(axes[0], kernels, strict=True):
        ax.imshow(mosaic(kernel[:, :, 0, :]), cmap="RdBu_r")  # (KH, KW, C, F) -> (KH, KW, F)
        ax.set_title(f"{framework}: {name} {kernel.shape}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    return save_figure(fig, path)


def fig_misclassified(
    found: Collected, maps: FeatureMaps, path: Path, per_framework: int = 8
) -> Path | None:
    """The first misclassified test images of each framework, predicted and true class."""
    loaded = [(fw, a) for fw, a in maps if len(a.get("wrong/index", []))]
    if not loaded:
        return None
    names = found.runs[0].class_names
    fig = Figure(figsize=(1.6 * per_framework, 2.0 * len(loaded)))
    axes = fig.subplots(len(loaded), per_framework, squeeze=False)
    for row, (framework, arrays) in enumerate(loaded):
        for col in range(per_framework):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(arrays["wrong/index"]):
                ax.axis("off")
                continue
            ax.imshow(arrays["wrong/images"][col, :, :, 0], cmap="gray")
            predicted = names[arrays["wrong/predicted"][col]]
            true = names[arrays["wrong/true"][col]]
            ax.set_title(
                f"#{arrays['wrong/index'][col]}\npred {predicted} / true {true}", fontsize=7
            )
        axes[row, 0].set_ylabel(framework)
    return save_figure(fig, path)


def make_figures(out: Path, found: Collected) -> list[FigureFile]:
    """Write every figure the runs allow into ``out/figures``, in report order."""
    figures_dir = Path(out) / FIGURES_DIR
    figures_dir.mkdir(parents=True, exist_ok=True)
    if not found.runs:
        return []
    shared = found.config.get("init") == "shared"
    maps = load_feature_maps(found)  # read once: two figures use it
    made = {
        "curves": fig_curves(found, figures_dir / CURVES_FIGURE),
        "step_loss": fig_step_loss(found, figures_dir / STEP_LOSS_FIGURE),
        "confusion": fig_confusion(found, figures_dir / CONFUSION_FIGURE),
        "class_f1": fig_class_f1(found, figures_dir / CLASS_F1_FIGURE),
        "feature_maps": fig_feature_maps(maps, figures_dir / FEATURE_MAPS_FIGURE, shared),
        "filters": fig_filters(found, figures_dir / FILTERS_FIGURE),
        "misclassified": fig_misclassified(found, maps, figures_dir / MISCLASSIFIED_FIGURE),
    }
    return [FigureFile(name, CAPTIONS[name], p) for name, p in made.items() if p is not None]
