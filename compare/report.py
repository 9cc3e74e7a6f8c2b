"""Results folder -> results.json, history.csv, figures/*.png, report.md, report.html.

``write_outputs(out)`` reads only what the commands left on disk (``compare.collect``), so
``cnn-compare report DIR`` renders the same report again without training or the dataset.
The work is split by job: ``collect`` reads, ``differences``, ``tables`` and ``analysis``
compute, ``figures`` and ``analysis_figures`` plot, ``render`` writes the documents; this
module only puts them in order.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from cnn_common.files import atomic_write_json
from compare import analysis, tables
from compare.collect import Collected, collect
from compare.differences import differences
from compare.figures import make_figures
from compare.layout import FIGURES_DIR, HISTORY_FILE, REPORT_HTML, REPORT_MD, RESULTS_FILE
from compare.render import Section, write_history_csv, write_html, write_markdown

ENVIRONMENT_TEXT = (
    "Where each framework ran. The command reproduces the run; timings are comparable only "
    "on the same machine with the same threads."
)


def sections(found: Collected, rows: list[dict[str, Any]], out: Path) -> list[Section]:
    """Every part of the report, in order: results, the statistics, failures, the analysis
    (differences, ablation, locator, cross-evaluation, performance, rosetta), then the per-run
    figures."""
    figures_dir = out / FIGURES_DIR
    figures_dir.mkdir(parents=True, exist_ok=True)
    made: list[Section] = []
    if found.runs:
        text = (
            "Test-set results; epoch time is the median training epoch; peak memory is the "
            "largest resident set size of the process that ran the run, from the run's start "
            "(marked (process): from the process's start, earlier runs of it included)."
        )
        if any(row.get("seeds", 1) > 1 for row in rows):
            text += " With several seeds: the mean ± the standard deviation over the seeds."
        spread = tables.accuracy_spread(rows)
        if spread is not None:
            text += f" Spread of test accuracy across frameworks: {spread:.2f} points."
        busy = tables.busy_note(rows)
        if busy:
            text += " " + busy
        made.append(Section("Results", text, *tables.results_table(rows)))
        made += analysis.statistics_sections(found)
        head, environment = tables.environment_table(found)
        if environment:
            made.append(Section("Environment", ENVIRONMENT_TEXT, head, environment))
    if found.failures:
        failures = tables.failures_table(found)
        made.append(Section("Failed or incomplete runs", "These runs left no result:", *failures))
    if found.frameworks:
        diffs = differences(found.config, found.frameworks)
        measured = analysis.measured_effects(found.ablation)
        made.append(
            Section(
                "Framework differences",
                "What each framework does by default, what this run used, and whether "
                "the run neutralised the difference"
                + (" (and, from the ablation, how much it matters)." if measured else "."),
                *tables.differences_table(diffs, found.frameworks, measured),
            )
        )
    made += analysis.ablation_sections(found, figures_dir)
    made += analysis.parity_sections(found, figures_dir)
    made += analysis.crosseval_sections(found, figures_dir)
    made += analysis.bench_sections(found, figures_dir)
    made += analysis.rosetta_sections(out)
    if found.runs:
        made.append(
            Section("Per-class precision / recall / F1", "", *tables.class_report_table(found))
        )
    made += [Section(f.caption, figures=[f]) for f in make_figures(out, found)]
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
    made = sections(found, rows, out)
    intro = [tables.config_line(found)] if found.runs else []
    write_markdown(out / REPORT_MD, intro, made)
    write_html(out / REPORT_HTML, intro, made)
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
