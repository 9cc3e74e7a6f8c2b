"""Statistics over seeds: is a difference between two frameworks real?

``inference`` computes intervals and tests, ``section`` is its part of the report.
"""

from compare.engine.features import Feature

FEATURE = Feature(
    name="stats",
    sections=((20, "compare.stats.section:statistics_sections"),),
    order=90,
)
