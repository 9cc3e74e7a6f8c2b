"""``cnn-compare ablate``: which framework default causes a difference, and how much.

``command`` orchestrates (its runs are ``compare.run``'s training jobs, batched per worker),
``arms`` plans them, ``effects`` measures them, ``section`` and ``figures`` are its parts of
the report.
"""

from compare.engine.features import Feature

FEATURE = Feature(
    name="ablate",
    help="which framework default causes a difference, and how much",
    command="compare.ablate.command",
    sections=((60, "compare.ablate.section:ablation_sections"),),
    order=40,
)
