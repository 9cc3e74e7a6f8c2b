"""``cnn-compare ablate``: which framework default causes a difference, and how much.

``command`` orchestrates (its runs are ``compare.run``'s training jobs, batched per worker),
``arms`` plans them, ``effects`` measures them, ``section`` and ``figures`` are its parts of
the report.
"""

from compare.engine.features import Feature

FEATURE = Feature.in_package(
    __name__,
    help="which framework default causes a difference, and how much",
    sections=((60, "ablation_sections"),),
    order=40,
)
