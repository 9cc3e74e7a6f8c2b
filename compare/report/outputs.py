"""Results folder -> results.json, history.csv, figures/*.png, report.md, report.html.

``write_outputs(out)`` reads only what the commands left on disk (``compare.report.collect``),
so ``cnn-compare report DIR`` renders the same report again without training or the dataset.
Each feature makes its own sections from what ``collect`` read (``Feature.sections``, placed
in the report by number); ``render`` writes the documents; this module only puts them in order.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from cnn_common.files import atomic_write_json
from compare.engine.features import report_sections, report_summaries
from compare.engine.layout import FIGURES_DIR, HISTORY_FILE, REPORT_HTML, REPORT_MD, RESULTS_FILE
from compare.report import tables
from compare.report.collect import Collected, collect
from compare.report.differences import differences
from compare.report.render import Section, write_history_csv, write_html, write_markdown
from compare.stats.pairs import pairs_record


def sections(found: Collected, out: Path) -> list[Section]:
    """Every part of the report, in the order the features place them: results, the
    statistics, failures, the differences, the ablation, locator, cross-evaluation,
    performance and rosetta, then the per-run figures."""
    figures_dir = out / FIGURES_DIR
    figures_dir.mkdir(parents=True, exist_ok=True)
    return [section for make in report_sections() for section in make(found, figures_dir)]


def write_outputs(out: Path) -> list[str]:
    """Write results.json, history.csv, figures, report.md and report.html; return one
    summary line per framework and per failure, the features' summaries (the pairs'
    verdicts), then the report's path."""
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
            "pairwise": pairs_record(found.runs, found.config),
        },
    )
    write_history_csv(out / HISTORY_FILE, found)
    made = sections(found, out)
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
    for summary in report_summaries():
        lines += summary(found)
    lines.append(f"report: {out / REPORT_HTML}")
    return lines
