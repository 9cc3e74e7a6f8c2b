"""The report's numbers as tables: pure functions of a ``Collected``, no files, no plots.

A table is ``(head, rows)``: a list of column titles and a list of rows of cell strings, as
``compare.report.render`` draws them in Markdown and HTML. ``summary_rows`` gives the same numbers
unformatted (one dict per framework) for ``results.json``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from cnn_common.conventions import CONVENTION_TOPICS
from cnn_common.results import RunResult
from compare.engine import registry
from compare.report.collect import Collected
from compare.report.differences import Difference

Table = tuple[list[str], list[list[str]]]  # head, rows

RESULTS_HEAD = [
    "framework",
    "test accuracy",
    "test loss",
    "parameters",
    "epoch time (s)",
    "samples/s",
    "peak memory (MiB)",
    "threads",
    "other load (cores)",
    "device",
    "init",
    "native",
    "versions",
]
SIZE_NAMES = (("train", "training"), ("val", "validation"), ("test", "test"))
# topic of the differences table -> the ablation factor that measures it
FACTOR_OF_TOPIC = {
    "init": "init",
    "adam_epsilon": "epsilon",
    "batch_order": "order",
    "same_padding": "padding",
    **{topic: topic for topic in CONVENTION_TOPICS if topic != "epsilon"},
}


def label(framework: str) -> str:
    """How the report names ``framework``: its registered label, else its bare name."""
    info = registry.frameworks().get(framework)
    return info.label if info is not None else framework


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def summary_rows(found: Collected) -> list[dict[str, Any]]:
    """One row per framework, aggregated over seeds (mean and sample std of the test metrics,
    medians of the timings, the largest peak memory)."""
    by_framework: dict[str, list[RunResult]] = defaultdict(list)
    for run in found.runs:
        by_framework[run.framework].append(run)
    rows = []
    for name, runs in by_framework.items():
        acc_m, acc_s = _mean_std([r.test_accuracy for r in runs])
        loss_m, loss_s = _mean_std([r.test_loss for r in runs])
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
                "epoch_time_s": float(np.median([t for r in runs for t in r.epoch_times])),
                "samples_per_s": float(np.median([r.samples_per_s for r in runs])),
                "peak_memory_mb": max(r.peak_memory_mb for r in runs),
                # counted from the process's start, not the run's (RunResult.peak_memory_scope)
                "peak_memory_cumulative": any(r.peak_memory_scope == "process" for r in runs),
                "wall_time_s": float(np.median([r.wall_time_s for r in runs])),
                "threads": runs[0].threads,
                # the most other processes took from the cores while one of these runs trained
                "other_cores": max((r.load.get("other_cores", 0.0) for r in runs), default=0.0),
                "busy": any(r.load.get("busy", False) for r in runs),
                "device": runs[0].device,
                "init": runs[0].init,
                "native": ", ".join(runs[0].native) or "none",
                "versions": ", ".join(f"{k} {v}" for k, v in runs[0].versions.items()),
            }
        )
    return rows


def _pm(mean: float, std: float, seeds: int, fmt: str) -> str:
    return f"{mean:{fmt}} ± {std:{fmt}}" if seeds > 1 else f"{mean:{fmt}}"


def results_table(rows: list[dict[str, Any]]) -> Table:
    """The summary rows formatted: one line per framework, ``mean ± std`` over several seeds."""
    return RESULTS_HEAD, [
        [
            f"{r['framework']} ({r['backend']})",
            _pm(100 * r["test_accuracy"], 100 * r["test_accuracy_std"], r["seeds"], ".2f") + " %",
            _pm(r["test_loss"], r["test_loss_std"], r["seeds"], ".4f"),
            f"{r['params']:,}",
            f"{r['epoch_time_s']:.1f}" + (" (busy)" if r["busy"] else ""),
            f"{r['samples_per_s']:,.0f}",
            f"{r['peak_memory_mb']:,.0f}" + (" (process)" if r["peak_memory_cumulative"] else ""),
            str(r["threads"] or "?"),
            f"{r['other_cores']:.2f}" + (" BUSY" if r["busy"] else ""),
            r["device"],
            r["init"],
            r["native"],
            r["versions"],
        ]
        for r in rows
    ]


def busy_note(rows: list[dict[str, Any]]) -> str:
    """What to do about timings measured while other processes used the cores, or ""."""
    busy = [r["framework"] for r in rows if r["busy"]]
    if not busy:
        return ""
    return (
        f"Timings of {', '.join(busy)} were measured while other processes kept more than a "
        'quarter of the cores busy (column "other load"): they are not this framework\'s speed. '
        "Rerun on an idle machine, or give every framework fewer threads than the free cores "
        "(--threads)."
    )


def accuracy_spread(rows: list[dict[str, Any]]) -> float | None:
    """Largest minus smallest mean test accuracy, in points; None for fewer than two."""
    accs = [r["test_accuracy"] for r in rows]
    return 100 * (max(accs) - min(accs)) if len(accs) > 1 else None


def failures_table(found: Collected) -> Table:
    """The runs that left no result and why (the error text may span several lines)."""
    rows = [[f["framework"], str(f["seed"]), f["kind"], f["error"]] for f in found.failures]
    return ["framework", "seed", "kind", "why"], rows


def class_report_table(found: Collected) -> Table:
    """Per-class precision / recall / F1, one column per framework (its first seed)."""
    firsts = [run for run, _ in found.first_seeds()]
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


def interval_text(mean: float, low: float, high: float, scale: float, fmt: str) -> str:
    """``mean [low, high]``, each times ``scale`` in the format ``fmt``."""
    return f"{scale * mean:{fmt}} [{scale * low:{fmt}}, {scale * high:{fmt}}]"


def measured_effects(ablation: dict[str, Any] | None) -> dict[str, str]:
    """Topic key -> one line per framework with the ablation's effect and verdict."""
    if not ablation:
        return {}
    measured: dict[str, str] = {}
    for topic, factor in FACTOR_OF_TOPIC.items():
        lines = []
        for row in ablation["effects"]:
            if row["factor"] != factor:
                continue
            if not row["runs"]:
                lines.append(f"{row['framework']}: {row['why']}")
                continue
            acc = row["accuracy"]
            effect = interval_text(acc["difference"], acc["low"], acc["high"], 100, "+.2f")
            lines.append(f"{row['framework']}: {effect} pts, {row['verdict']}")
        if lines:
            measured[topic] = "\n".join(lines)
    return measured


def differences_table(
    diffs: list[Difference], frameworks: list[str], measured: dict[str, str] | None = None
) -> Table:
    """One row per difference: each framework's default (a column per framework, titled by
    its label), what this run used, whether that neutralised it and, when an ablation is in
    the folder, its measured effect (``measured``: topic key -> text)."""
    head = ["difference", *(label(name) for name in frameworks), "this run", "neutralised"]
    if measured:
        head.append("measured effect (ablation)")
    rows = []
    for d in diffs:
        row = [d.topic, *(d.native.get(n, "") for n in frameworks), d.this_run, d.neutralised]
        if measured:
            row.append(measured.get(d.key, "not measured"))
        rows.append(row)
    return head, rows


def environment_table(found: Collected) -> Table:
    """Where each framework ran (its first run): the machine, the builds, the commit and the
    command that reproduces it."""
    head = ["framework", "CPU", "cores", "threads", "OS", "Python", "compute libraries",
            "git commit", "command"]  # fmt: skip
    rows = []
    for run, _ in found.first_seeds():
        env = run.environment
        if not env:
            continue
        shared = ("cpu", "cores", "os", "python", "git_commit", "command")
        libraries = ", ".join(f"{k} {v}" for k, v in env.items() if k not in shared)
        rows.append(
            [
                run.framework,
                str(env.get("cpu", "")),
                str(env.get("cores", "")),
                str(run.threads or "?"),
                str(env.get("os", "")),
                str(env.get("python", "")),
                libraries,
                str(env.get("git_commit", "")) or "not a git checkout",
                str(env.get("command", "")),
            ]
        )
    return head, rows


def sizes_text(found: Collected) -> str:
    """``"55,000 training / 5,000 validation / 10,000 test images"`` from the first run that
    recorded its image counts; empty when none did."""
    sizes = next((run.sizes for run in found.runs if run.sizes), {})
    if not sizes:
        return ""
    counts = [f"{sizes[key]:,} {name}" for key, name in SIZE_NAMES if key in sizes]
    return " / ".join(counts) + " images"


def config_line(found: Collected) -> str:
    """The report's first line: what was run, on how many images, where."""
    config = found.config
    train = config.get("train", {})
    parts = [
        f"dataset {config.get('dataset')}",
        sizes_text(found),
        f"{train.get('epochs')} epoch{'' if train.get('epochs') == 1 else 's'}",
        f"batch {train.get('batch_size')}",
        f"{train.get('optimizer')} lr {train.get('learning_rate')}",
        f"seed {train.get('seed')} × {config.get('seeds')} seed(s)",
        f"init {config.get('init')}",
        f"device {config.get('device')}",
        f"subset {config['subset']}" if config.get("subset") else "",
        wall_text(found.wall),
    ]
    return ", ".join(part for part in parts if part)


def wall_text(wall: dict[str, Any] | None) -> str:
    """``"wall time 66 s"`` (training and cross-evaluation, the report excluded), with the
    number of sessions when the run was resumed; empty when the folder has no record."""
    sessions = (wall or {}).get("sessions") or []
    if not sessions:
        return ""
    total = sum(float(s.get("seconds", 0.0)) for s in sessions)
    shown = f"{total:.0f} s" if total < 600 else f"{total / 60:.1f} min"
    over = f" over {len(sessions)} sessions" if len(sessions) > 1 else ""
    return f"wall time {shown}{over} (training and cross-evaluation)"
