"""The report's own section: where the frameworks of the run differ by default
(``compare.report.differences``), with the ablation's measured effect when there is one."""

from __future__ import annotations

from pathlib import Path

from compare.report import tables
from compare.report.collect import Collected
from compare.report.differences import differences
from compare.report.render import Section


def differences_sections(found: Collected, figures_dir: Path) -> list[Section]:
    """What each framework does by default, what the run used, whether it was neutralised."""
    if not found.frameworks:
        return []
    diffs = differences(found.config, found.frameworks)
    measured = tables.measured_effects(found.ablation)
    return [
        Section(
            "Framework differences",
            "What each framework does by default, what this run used, and whether "
            "the run neutralised the difference"
            + (" (and, from the ablation, how much it matters)." if measured else "."),
            *tables.differences_table(diffs, found.frameworks, measured),
        )
    ]
