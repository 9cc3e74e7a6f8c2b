"""Results folder -> results.json, history.csv, figures/*.png, report.md, report.html.

``write_outputs(out)`` reads only what the runs left on disk (``runs/*/run.json``,
``failed.json``, ``feature_maps.npz``, ``weights.safetensors``), so ``cnn-compare report DIR``
renders the same report again without training or the dataset. The HTML embeds every figure
as a data URI: it opens offline and names no external URL.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnn_common.errors import UserError
from cnn_common.results import RESULT_FILE, WEIGHTS_FILE, RunResult
from cnn_common.weights import atomic_write_bytes
from compare.differences import Difference, differences
from compare.frameworks import FRAMEWORKS

FIGURES_DIR = "figures"
COLORS = {"numpy": "#1f77b4", "keras": "#d62728", "lightning": "#7b3fbf"}


@dataclass
class Collected:
    """Everything found in a results folder."""

    config: dict[str, Any]
    runs: list[RunResult] = field(default_factory=list)
    run_dirs: list[Path] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)  # framework, seed, kind, error
    parity: dict[str, Any] | None = None


def collect(out: Path) -> Collected:
    """Read every run under ``out/runs``; runs without a record count as failures."""
    from compare.runner import CONFIG_FILE, RUNS_DIR
    from compare.worker import FAILED_FILE

    config_path = out / CONFIG_FILE
    if not config_path.is_file():
        raise UserError(
            f"{out} is not a results folder (no {CONFIG_FILE})",
            "give the --out folder of a `cnn-compare run`",
        )
    found = Collected(config=json.loads(config_path.read_text()))
    parity_path = out / "parity.json"
    if parity_path.is_file():
        found.parity = json.loads(parity_path.read_text())
    order = {name: i for i, name in enumerate(FRAMEWORKS)}
    dirs = sorted(
        (out / RUNS_DIR).glob("*-seed*"),
        key=lambda p: (
            int(p.name.rsplit("seed", 1)[1]),
            order.get(p.name.rsplit("-seed", 1)[0], 99),
        ),
    )
    for path in dirs:
        framework, seed = path.name.rsplit("-seed", 1)
        record = path / RESULT_FILE
        failed = path / FAILED_FILE
        if failed.is_file():
            failure = json.loads(failed.read_text())
            found.failures.append({"framework": framework, "seed": int(seed), **failure})
        elif record.is_file():
            found.runs.append(RunResult.from_json(record))
            found.run_dirs.append(path)
        else:
            found.failures.append(
                {
                    "framework": framework,
                    "seed": int(seed),
                    "kind": "killed",
                    "error": "no result: the run was interrupted (complete it with --resume)",
                }
            )
    return found


# ----------------------------------------------------------------------------- tables


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def summary_rows(found: Collected) -> list[dict[str, Any]]:
    """One row per framework, aggregated over seeds (mean ± std where there are several)."""
    by_framework: dict[str, list[RunResult]] = defaultdict(list)
    for run in found.runs:
        by_framework[run.framework].append(run)
    rows = []
    for name, runs in by_framework.items():
        acc_m, acc_s = _mean_std([r.test_accuracy for r in runs])
        loss_m, loss_s = _mean_std([r.test_loss for r in runs])
        epoch = float(np.median([t for r in runs for t in r.epoch_times]))
        rows.append(
            {
                "framework": name,
                "backend": runs[0].backend,
                "seeds": len(runs),
                "test_accuracy": acc_m,
                "test_accuracy_std": acc_s,
                "test_loss": loss_m,
                "test_loss_std": loss_s,
                "params": runs[0].param_count,
                "epoch_time_s": epoch,
                "samples_per_s": float(np.median([r.samples_per_s for r in runs])),
                "peak_memory_mb": max(r.peak_memory_mb for r in runs),
                "wall_time_s": float(np.median([r.wall_time_s for r in runs])),
                "device": runs[0].device,
                "init": runs[0].init,
                "versions": ", ".join(f"{k} {v}" for k, v in runs[0].versions.items()),
            }
        )
    return rows


def _pm(mean: float, std: float, seeds: int, fmt: str) -> str:
    return f"{mean:{fmt}} ± {std:{fmt}}" if seeds > 1 else f"{mean:{fmt}}"


SUMMARY_HEAD = [
    "framework",
    "test accuracy",
    "test loss",
    "parameters",
    "epoch time (s)",
    "samples/s",
    "peak memory (MiB)",
    "device",
    "init",
    "versions",
]


def summary_table(rows: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            f"{r['framework']} ({r['backend']})",
            _pm(100 * r["test_accuracy"], 100 * r["test_accuracy_std"], r["seeds"], ".2f") + " %",
            _pm(r["test_loss"], r["test_loss_std"], r["seeds"], ".4f"),
            f"{r['params']:,}",
            f"{r['epoch_time_s']:.1f}",
            f"{r['samples_per_s']:,.0f}",
            f"{r['peak_memory_mb']:,.0f}",
            r["device"],
            r["init"],
            r["versions"],
        ]
        for r in rows
    ]


def class_report_table(found: Collected) -> tuple[list[str], list[list[str]]]:
    """Per-class precision/recall/F1, one column group per framework (first seed)."""
    firsts = _first_seed_runs(found)
    head = ["class"] + [f"{run.framework} P / R / F1" for run in firsts]
    names = firsts[0].class_names + ["macro avg"] if firsts else []
    rows = []
    for name in names:
        cells = [name]
        for run in firsts:
            entry = run.class_report[name]
            cells.append(f"{entry['precision']:.3f} / {entry['recall']:.3f} / {entry['f1']:.3f}")
        rows.append(cells)
    return head, rows


def _first_seed_dirs(found: Collected) -> list[tuple[RunResult, Path]]:
    """Each framework's first run (lowest seed) and its folder: what per-run figures show."""
    seen: dict[str, tuple[RunResult, Path]] = {}
    for run, path in zip(found.runs, found.run_dirs, strict=True):
        seen.setdefault(run.framework, (run, path))
    return list(seen.values())


def _first_seed_runs(found: Collected) -> list[RunResult]:
    return [run for run, _ in _first_seed_dirs(found)]


def write_history_csv(path: Path, found: Collected) -> None:
    """One row per (framework, seed, epoch)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            "framework",
            "seed",
            "epoch",
            "train_loss",
            "train_accuracy",
            "val_loss",
            "val_accuracy",
            "time_s",
        ]
    )
    for run in found.runs:
        for h in run.history:
            writer.writerow(
                [
                    run.framework,
                    run.train_spec["seed"],
                    h.epoch,
                    h.train_loss,
                    h.train_accuracy,
                    h.val_loss,
                    h.val_accuracy,
                    h.time_s,
                ]
            )
    atomic_write_bytes(path, buffer.getvalue().encode())


# ----------------------------------------------------------------------------- figures


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    _plt().close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


# Three frameworks trained from shared weights often draw the same line: give each its own
# marker and width, widest first, so that lines lying on top of each other stay visible.
STYLES = {"numpy": ("o", 3.5), "keras": ("s", 2.2), "lightning": ("^", 1.0)}


def fig_curves(found: Collected, path: Path) -> Path:
    """Training and validation loss and accuracy per epoch, every framework on one axes."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for run in found.runs:
        epochs = [h.epoch for h in run.history]
        color = COLORS.get(run.framework)
        marker, width = STYLES.get(run.framework, ("o", 1.5))
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
                marker=marker,
                color=color,
                linewidth=width,
                markersize=2 + 2 * width,
                alpha=0.8,
                label=f"{label} {part}",
            )
    for ax, title in zip(axes, ["loss per epoch", "accuracy per epoch (%)"], strict=True):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def fig_step_loss(found: Collected, path: Path) -> Path:
    """Every training step's loss, overlaid, with a 50-step moving average."""
    plt = _plt()
    runs = _first_seed_runs(found)
    fig, axes = plt.subplots(2, 1, figsize=(11, 6.5), height_ratios=[2, 1], sharex=True)
    for run in runs:
        losses = np.asarray(run.step_losses)
        color = COLORS.get(run.framework)
        _, width = STYLES.get(run.framework, ("o", 1.5))
        axes[0].plot(losses, color=color, alpha=0.2, linewidth=0.5)
        window = min(50, len(losses))
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        axes[0].plot(
            np.arange(window - 1, len(losses)),
            smooth,
            color=color,
            linewidth=width,
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
                color=COLORS.get(run.framework),
                linewidth=0.6,
                label=f"|{run.framework} - {runs[0].framework}|",
            )
        axes[1].set_yscale("log")
        axes[1].set_ylabel("|loss difference|")
        axes[1].legend(fontsize=8)
        axes[1].grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("loss (log scale)")
    axes[0].set_title("per-step training loss (faint: every step; solid: 50-step mean)")
    axes[0].grid(alpha=0.3)
    axes[0].legend()
    axes[-1].set_xlabel("training step")
    return _save(fig, path)


def fig_confusion(found: Collected, path: Path) -> Path:
    plt = _plt()
    runs = _first_seed_runs(found)
    fig, axes = plt.subplots(1, len(runs), figsize=(4.6 * len(runs), 4.4), squeeze=False)
    for ax, run in zip(axes[0], runs, strict=True):
        cm = np.asarray(run.confusion_matrix)
        ax.imshow(np.log1p(cm), cmap="Blues")
        k = len(cm)
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(
                        j,
                        i,
                        str(cm[i, j]),
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if i == j else "black",
                    )
        ax.set_title(f"{run.framework}: {100 * run.test_accuracy:.2f} %")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_xticks(range(k))
        ax.set_yticks(range(k))
    return _save(fig, path)


def fig_class_f1(found: Collected, path: Path) -> Path:
    plt = _plt()
    runs = _first_seed_runs(found)
    names = runs[0].class_names
    fig, ax = plt.subplots(figsize=(11, 3.6))
    width = 0.8 / len(runs)
    for i, run in enumerate(runs):
        f1 = [run.class_report[name]["f1"] for name in names]
        ax.bar(
            np.arange(len(names)) + i * width,
            f1,
            width,
            label=run.framework,
            color=COLORS.get(run.framework),
        )
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2)
    ax.set_xticklabels(names, fontsize=8)
    low = min(run.class_report[n]["f1"] for run in runs for n in names)
    ax.set_ylim(max(0.0, low - 0.02), 1.0)
    ax.set_title("per-class F1")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _mosaic(maps: np.ndarray) -> np.ndarray:
    """``(H, W, C)`` -> one 2-D image of the C channels tiled in a near-square grid."""
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


FeatureMaps = list[tuple[str, dict[str, np.ndarray]]]  # (framework, feature_maps.npz arrays)


def load_feature_maps(found: Collected) -> FeatureMaps:
    from compare.worker import FEATURES_FILE

    loaded = []
    for run, path in _first_seed_dirs(found):
        if (path / FEATURES_FILE).is_file():
            with np.load(path / FEATURES_FILE) as npz:
                loaded.append((run.framework, {k: npz[k] for k in npz.files}))
    return loaded


def fig_feature_maps(loaded: FeatureMaps, path: Path, shared: bool) -> Path | None:
    """Every conv and pool layer's maps of test image 0: one column per framework, and the
    largest pairwise difference as a heatmap when the run started from shared weights."""
    plt = _plt()
    if not loaded:
        return None
    layer_names = [k.split("/", 1)[1] for k in loaded[0][1] if k.startswith("map/")]
    cols = len(loaded) + (1 if shared and len(loaded) > 1 else 0) + 1
    fig, axes = plt.subplots(
        len(layer_names), cols, figsize=(3.2 * cols, 3.0 * len(layer_names)), squeeze=False
    )
    image = loaded[0][1]["images"][0, :, :, 0]
    for row, layer in enumerate(layer_names):
        if row == 0:
            axes[row, 0].imshow(image, cmap="gray")
            axes[row, 0].set_title("test image 0")
        else:
            axes[row, 0].axis("off")
            axes[row, 0].text(
                0.5,
                0.5,
                layer,
                ha="center",
                va="center",
                fontsize=14,
                transform=axes[row, 0].transAxes,
            )
        stack = []
        for col, (framework, arrays) in enumerate(loaded, start=1):
            maps = arrays[f"map/{layer}"][0]  # (H, W, C) of image 0
            stack.append(maps)
            axes[row, col].imshow(_mosaic(maps), cmap="viridis")
            axes[row, col].set_title(f"{framework} {layer} {maps.shape}", fontsize=8)
        if cols > len(loaded) + 1:
            diff = np.max(
                [np.abs(a - b) for i, a in enumerate(stack) for b in stack[i + 1 :]], axis=0
            )
            shown = axes[row, -1].imshow(_mosaic(diff), cmap="magma")
            axes[row, -1].set_title(f"max |difference| (max {np.nanmax(diff):.2g})", fontsize=8)
            fig.colorbar(shown, ax=axes[row, -1], fraction=0.046)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    return _save(fig, path)


def fig_filters(found: Collected, path: Path) -> Path | None:
    """The learned first-layer kernels (input channel 0), one row per framework."""
    from safetensors.numpy import load_file

    plt = _plt()
    kernels = []
    for run, run_path in _first_seed_dirs(found):
        if (run_path / WEIGHTS_FILE).is_file():
            kernels.append((run.framework, load_file(run_path / WEIGHTS_FILE)["conv1.kernel"]))
    if not kernels:
        return None
    fig, axes = plt.subplots(1, len(kernels), figsize=(4 * len(kernels), 4), squeeze=False)
    for ax, (framework, kernel) in zip(axes[0], kernels, strict=True):
        ax.imshow(_mosaic(kernel[:, :, 0, :]), cmap="RdBu_r")
        ax.set_title(f"{framework}: conv1 kernels {kernel.shape}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(fig, path)


def fig_misclassified(
    found: Collected, maps: FeatureMaps, path: Path, per_framework: int = 8
) -> Path | None:
    plt = _plt()
    loaded = [(fw, a) for fw, a in maps if len(a.get("wrong/index", []))]
    if not loaded:
        return None
    names = found.runs[0].class_names
    fig, axes = plt.subplots(
        len(loaded), per_framework, figsize=(1.6 * per_framework, 2.0 * len(loaded)), squeeze=False
    )
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
    return _save(fig, path)


def make_figures(out: Path, found: Collected) -> dict[str, Path]:
    """Write every figure the runs allow; return name -> path."""
    figures_dir = out / FIGURES_DIR
    figures_dir.mkdir(parents=True, exist_ok=True)
    if not found.runs:
        return {}
    shared = found.config.get("init") == "shared"
    maps = load_feature_maps(found)  # read once: two figures use it
    made = {
        "curves": fig_curves(found, figures_dir / "curves.png"),
        "step_loss": fig_step_loss(found, figures_dir / "step_loss.png"),
        "confusion": fig_confusion(found, figures_dir / "confusion.png"),
        "class_f1": fig_class_f1(found, figures_dir / "class_f1.png"),
        "feature_maps": fig_feature_maps(maps, figures_dir / "feature_maps.png", shared),
        "filters": fig_filters(found, figures_dir / "filters.png"),
        "misclassified": fig_misclassified(found, maps, figures_dir / "misclassified.png"),
    }
    return {name: p for name, p in made.items() if p is not None}


# ----------------------------------------------------------------------------- documents

CAPTIONS = {
    "curves": "Training (solid) and validation (dashed) loss and accuracy per epoch",
    "step_loss": "Per-step training loss",
    "confusion": "Confusion matrices (test set)",
    "class_f1": "Per-class F1 (test set)",
    "feature_maps": "Feature maps of every conv and pool layer for the same test image",
    "filters": "Learned first-layer filters",
    "misclassified": "Misclassified test images (predicted / true)",
}


def md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


Section = tuple[str, str, list[str], list[list[str]]]  # title, text, table head, table rows


def _sections(
    found: Collected, rows: list[dict[str, Any]], diffs: list[Difference]
) -> list[Section]:
    """Every table section of the report, in order, from the summary rows and differences."""
    sections = [
        (
            "Results",
            "Test-set results; epoch time is the median training epoch.",
            SUMMARY_HEAD,
            summary_table(rows),
        )
    ]
    if found.failures:
        sections.append(
            (
                "Failed or incomplete runs",
                "These runs left no result:",
                ["framework", "seed", "kind", "why"],
                [[f["framework"], str(f["seed"]), f["kind"], f["error"]] for f in found.failures],
            )
        )
    accs = [r["test_accuracy"] for r in rows]
    if len(accs) > 1:
        spread = 100 * (max(accs) - min(accs))
        sections[0] = (
            sections[0][0],
            sections[0][1] + f" Spread of test accuracy across frameworks: {spread:.2f} points.",
            sections[0][2],
            sections[0][3],
        )
    if found.runs:
        head, table = class_report_table(found)
        sections.append(("Per-class precision / recall / F1", "", head, table))
    diff_rows = [
        [
            d.topic,
            d.native.get("numpy", ""),
            d.native.get("keras", ""),
            d.native.get("lightning", ""),
            d.this_run,
            d.neutralised,
        ]
        for d in diffs
    ]
    sections.append(
        (
            "Framework differences",
            "What each framework does by default, what this run used, and whether "
            "the run neutralised the difference.",
            [
                "difference",
                "NumPy default",
                "Keras default",
                "Lightning default",
                "this run",
                "neutralised",
            ],
            diff_rows,
        )
    )
    return sections


def _config_line(config: dict[str, Any]) -> str:
    train = config.get("train", {})
    return (
        f"dataset {config.get('dataset')}, {train.get('epochs')} epochs, batch "
        f"{train.get('batch_size')}, {train.get('optimizer')} lr {train.get('learning_rate')}"
        f", seed {train.get('seed')} × {config.get('seeds')} seed(s), init "
        f"{config.get('init')}, device {config.get('device')}"
        + (f", subset {config['subset']}" if config.get("subset") else "")
    )


def write_markdown(
    path: Path, config: dict[str, Any], sections: list[Section], figures: dict[str, Path]
) -> None:
    parts = ["# cnn-rosetta comparison", "", _config_line(config), ""]
    for title, text, head, rows in sections:
        parts += [f"## {title}", "", text, "", md_table(head, rows), ""]
    for name, fig_path in figures.items():
        parts += [
            f"## {CAPTIONS[name]}",
            "",
            f"![{CAPTIONS[name]}]({FIGURES_DIR}/{fig_path.name})",
            "",
        ]
    atomic_write_bytes(path, "\n".join(parts).encode())


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
img { max-width: 100%; border: 1px solid #eee; }
figure { margin: 1em 0 2em; }
figcaption { font-size: 0.9em; color: #555; }
"""


def _anchor(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-")


def write_html(
    path: Path, config: dict[str, Any], sections: list[Section], figures: dict[str, Path]
) -> None:
    """A self-contained page: inline CSS, figures as base64 data URIs, no external URL."""
    parts = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        "<title>cnn-rosetta comparison</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>cnn-rosetta comparison</h1>",
        f"<p>{html.escape(_config_line(config))}</p>",
    ]
    for title, text, head, rows in sections:
        parts += [
            f"<h2 id='{_anchor(title)}'>{html.escape(title)}</h2>",
            f"<p>{html.escape(text)}</p>",
            _html_table(head, rows),
        ]
    for name, fig_path in figures.items():
        data = base64.b64encode(fig_path.read_bytes()).decode()
        caption = html.escape(CAPTIONS[name])
        parts += [
            f"<h2 id='{name}'>{caption}</h2>",
            "<figure>",
            f"<img alt='{caption}' src='data:image/png;base64,{data}'>",
            f"<figcaption>{caption}</figcaption></figure>",
        ]
    parts.append("</body></html>")
    atomic_write_bytes(path, "\n".join(parts).encode())


def write_outputs(out: Path) -> list[str]:
    """Write results.json, history.csv, figures, report.md and report.html; return a summary."""
    found = collect(out)
    rows = summary_rows(found)
    diffs = differences(found.config)
    results = {
        "config": found.config,
        "summary": rows,
        "runs": [run.to_dict() for run in found.runs],
        "failures": found.failures,
        "differences": [d.__dict__ for d in diffs],
    }
    atomic_write_bytes(out / "results.json", json.dumps(results, indent=1).encode())
    write_history_csv(out / "history.csv", found)
    figures = make_figures(out, found)
    sections = _sections(found, rows, diffs)
    write_markdown(out / "report.md", found.config, sections, figures)
    write_html(out / "report.html", found.config, sections, figures)
    lines = [
        f"{r['framework']:<10} test accuracy {100 * r['test_accuracy']:.2f} %  "
        f"loss {r['test_loss']:.4f}  epoch {r['epoch_time_s']:.1f} s"
        for r in rows
    ]
    lines += [
        f"{f['framework']:<10} FAILED ({f['kind']}): {f['error'].splitlines()[0]}"
        for f in found.failures
    ]
    lines.append(f"report: {out / 'report.html'}")
    return lines
