"""The report's performance sections: what ``cnn-compare bench`` measured (``bench.json``)."""

from __future__ import annotations

from pathlib import Path

from compare.bench.figures import fig_phases
from compare.bench.measure import REFERENCE, variant_label
from compare.bench.tables import busy_warning, describe, phase_cells, summary_cells
from compare.engine.layout import BENCH_PHASES_FIGURE
from compare.report.collect import Collected
from compare.report.render import FigureFile, Section


def bench_sections(found: Collected, figures_dir: Path) -> list[Section]:
    """``cnn-compare bench``'s result: what was measured and each framework's throughput,
    then each one's training step by phase, as a table and stacked bars."""
    result = found.bench
    if not result or not result.get("rows"):
        return []
    rows = result["rows"]
    text = (
        f"What `cnn-compare bench` measured: {describe(result)}. Time / "
        f"{REFERENCE}: the median epoch (or inference) time over that of the plain "
        "PyTorch loop on the same batches. GFLOP/s count a training step as three forward "
        f"passes of {result['forward_mflop_per_image']:.2f} MFLOP per image, with their share "
        "of the machine's peak; peak MiB: the largest peak resident memory of a framework's "
        "processes, read right after training."
    )
    warning = busy_warning(rows)
    if warning:
        text += f" Warning: {warning}"
    made = [Section("Performance", text, *summary_cells(rows))]
    if not any(r["phases_ms"] or r["phases_note"] for r in rows):
        return made  # the bench ran with --phase-steps 0
    figure = fig_phases(
        {variant_label(r): r["phases_ms"] for r in rows}, figures_dir / BENCH_PHASES_FIGURE
    )
    caption = "Milliseconds per training step by phase"
    made.append(
        Section(
            "Performance: where a training step's time goes",
            f"Milliseconds per training step in each phase: the median of "
            f"{result['phase_steps']} steps timed after the epochs, then over the processes. "
            "A framework that cannot split its step says why in the note.",
            *phase_cells(rows),
            [FigureFile("bench-phases-figure", caption, figure)] if figure else [],
        )
    )
    return made
