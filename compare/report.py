"""Results folder -> results.json, history.csv, figures/*.png, report.md, report.html.

``write_outputs(out)`` reads only what the runs left on disk (``compare.collect``), so
``cnn-compare report DIR`` renders the same report again without training or the dataset.
The work is split by job: ``collect`` reads, ``differences`` and ``tables`` compute,
``figures`` plots, ``render`` writes the documents; this module only puts them in order.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from cnn_common.files import atomic_write_json
from compare import tables
from compare.collect import Collected, collect
from compare.differences import Difference, differences
from compare.figures import make_figures
from compare.layout import HISTORY_FILE, REPORT_HTML, REPORT_MD, RESULTS_FILE
from compare.render import Section, write_history_csv, write_html, write_markdown


def sections(
    found: Collected, rows: list[dict[str, Any]], diffs: list[Difference]
) -> list[Section]:
    """Every table of the report, in order: results, failures, per-class scores, differences."""
    text = "Test-set results; epoch time is the median training epoch."
    spread = tables.accuracy_spread(rows)
    if spread is not None:
        text += f" Spread of test accuracy across frameworks: {spread:.2f} points."
    made = [Section("Results", text, *tables.results_table(rows))]
    if found.failures:
        failures = tables.failures_table(found)
        made.append(Section("Failed or incomplete runs", "These runs left no result:", *failures))
    if found.runs:
        classes = tables.class_report_table(found)
        made.append(Section("Per-class precision / recall / F1", "", *classes))
    made.append(
        Section(
            "Framework differences",
            "What each framework does by default, what this run used, and whether "
            "the run neutralised the difference.",
            *tables.differences_table(diffs, found.frameworks),
        )
    )
    return made


def write_outputs(out: Path) -> list[str]:
    """Write results.json, history.csv, figures, report.md and report.html; return one
    summary line per framework and per failure, then the report's path."""
    out = Path(out)
    found = collect(out)
    rows = tables.summary_rows(found)
    diffs = differences(found.config, found.frameworks)
    atomic_write_json(
        out / RESULTS_FILE,
        {
            "config": found.config,
            "summary": rows,
            "runs": [run.to_dict() for run in found.runs],
            "failures": found.failures,
            "differences": [dataclasses.asdict(d) for d in diffs],
        },
    )
    write_history_csv(out / HISTORY_FILE, found)
    figures = make_figures(out, found)
    made = sections(found, rows, diffs)
    intro = tables.config_line(found)
    write_markdown(out / REPORT_MD, intro, made, figures)
    write_html(out / REPORT_HTML, intro, made, figures)
    lines = [
        f"{r['framework']:<12} test accuracy {100 * r['test_accuracy']:.2f} %  "
        f"loss {r['test_loss']:.4f}  epoch {r['epoch_time_s']:.1f} s"
        for r in rows
    ]
    for failure in found.failures:
        why = failure["error"].partition("\n")[0]
        lines.append(f"{failure['framework']:<12} FAILED ({failure['kind']}): {why}")
    lines.append(f"report: {out / REPORT_HTML}")
    return lines
