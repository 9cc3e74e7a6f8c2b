"""The bench's results as tables and sentences: what ``cnn-compare bench`` prints and what
its report section shows, from the rows of ``bench.json``."""

from __future__ import annotations

from typing import Any

from cnn_common.phases import LABELS, PHASES
from compare.bench.measure import REFERENCE, variant_label
from compare.report.render import md_table
from compare.report.tables import Table


def summary_cells(rows: list[dict[str, Any]]) -> Table:
    """The summary rows as a table's head and cells: one row per variant, as stored; a
    ratio or the inference cells blank where the row has none."""
    head = [
        "framework",
        "train img/s",
        "step ms",
        f"time / {REFERENCE}",
        "GFLOP/s (of peak)",
        "infer img/s",
        f"infer time / {REFERENCE}",
        "infer GFLOP/s (of peak)",
        "peak MiB",
    ]
    lines = []
    for r in rows:
        busy = " (machine busy)" if r["busy"] else ""
        infer = "infer_images_per_s" in r
        lines.append(
            [
                variant_label(r) + busy,
                f"{r['train_images_per_s']:,.0f}",
                f"{r['step_ms']:.2f}",
                f"{r['train_time_ratio']:.2f}x" if "train_time_ratio" in r else "",
                f"{r['train_gflops']:.1f} ({r['train_peak_share']:.0%})",
                f"{r['infer_images_per_s']:,.0f}" if infer else "",
                f"{r['infer_time_ratio']:.2f}x" if "infer_time_ratio" in r else "",
                f"{r['infer_gflops']:.1f} ({r['infer_peak_share']:.0%})" if infer else "",
                f"{r['train_peak_rss_mib']:.0f}",
            ]
        )
    return head, lines


def table(rows: list[dict[str, Any]]) -> str:
    """The summary rows as a Markdown table (what the command prints)."""
    return md_table(*summary_cells(rows))


def phase_cells(rows: list[dict[str, Any]]) -> Table:
    """Milliseconds per step by phase (the phases some row has, in ``PHASES`` order), one row
    per variant, and its note, as a table's head and cells."""
    used = [p for p in PHASES if any(p in r["phases_ms"] for r in rows)]
    head = ["framework", *(LABELS[p] for p in used), "note"]
    lines = [
        [
            variant_label(r),
            *(f"{r['phases_ms'][p]:.2f}" if p in r["phases_ms"] else "" for p in used),
            r["phases_note"],
        ]
        for r in rows
    ]
    return head, lines


def phase_table(rows: list[dict[str, Any]]) -> str:
    """Milliseconds per step by phase, one row per variant, and its note (Markdown)."""
    return md_table(*phase_cells(rows))


def describe(result: dict[str, Any]) -> str:
    """What ``bench_result``'s ``result`` measured, in one sentence without its full stop."""
    return (
        f"{result['train_images']:,} training images per epoch; medians over "
        f"{result['processes']} fresh process(es) per framework, the frameworks taking turns, "
        f"{result['epochs']} timed epoch(s) each after a warm-up epoch; {result['threads']} "
        f"thread(s); machine peak {result['peak_gflops']:.0f} GFLOP/s (float32 matrix "
        "multiply with the same threads)"
    )


def busy_warning(rows: list[dict[str, Any]]) -> str:
    """A sentence naming the variants timed on a busy machine; empty when none was."""
    busy = [r for r in rows if r["busy"]]
    if not busy:
        return ""
    cores = max(r["other_cores"] for r in busy)
    return (
        f"{', '.join(variant_label(r) for r in busy)} measured while other processes kept "
        f"{cores:.1f} cores busy: rerun `cnn-compare bench` on an idle machine."
    )
