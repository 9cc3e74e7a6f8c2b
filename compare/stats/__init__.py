"""Statistics over seeds: is a difference between two frameworks real, absent, or unknown?

``inference`` computes intervals and tests, ``margins`` states how close is equivalent,
``pairs`` makes the family of every pair, ``section`` is its part of the report and of the
terminal's summary.
"""

from compare.engine.features import Feature

FEATURE = Feature(
    name="stats",
    sections=((20, "compare.stats.section:statistics_sections"),),
    summary="compare.stats.section:summary_lines",
    order=90,
)
