"""The report's sections of the runs themselves: results, environment, failures, the per-class
table and the per-run figures (``compare.run.figures``)."""

from __future__ import annotations

from pathlib import Path

from compare.report import tables
from compare.report.collect import Collected
from compare.report.render import Section
from compare.run.figures import make_figures

ENVIRONMENT_TEXT = (
    "Where each framework ran. The command reproduces the run; timings are comparable only "
    "on the same machine with the same threads."
)


def results_sections(found: Collected, figures_dir: Path) -> list[Section]:
    """Each framework's test results and timings, over its seeds."""
    if not found.runs:
        return []
    rows = tables.summary_rows(found)
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
    return [Section("Results", text, *tables.results_table(rows))]


def environment_sections(found: Collected, figures_dir: Path) -> list[Section]:
    """Where each framework ran: versions, threads, device, the command."""
    if not found.runs:
        return []
    head, environment = tables.environment_table(found)
    return [Section("Environment", ENVIRONMENT_TEXT, head, environment)] if environment else []


def failure_sections(found: Collected, figures_dir: Path) -> list[Section]:
    """The runs that left no result, and why."""
    if not found.failures:
        return []
    failures = tables.failures_table(found)
    return [Section("Failed or incomplete runs", "These runs left no result:", *failures)]


def class_report_sections(found: Collected, figures_dir: Path) -> list[Section]:
    """Per-class precision, recall and F1 of every run."""
    if not found.runs:
        return []
    return [Section("Per-class precision / recall / F1", "", *tables.class_report_table(found))]


def figure_sections(found: Collected, figures_dir: Path) -> list[Section]:
    """One section per figure of the runs."""
    return [Section(f.caption, figures=[f]) for f in make_figures(figures_dir.parent, found)]
