"""The cross-evaluation that ``cnn-compare run`` ends with: each framework's trained weights run
in every framework.

``evaluate`` orchestrates and summarises, ``task`` evaluates in one framework's worker,
``section`` and ``figures`` are its part of the report.
"""

from compare.crosseval.job import CrossEvalJob
from compare.engine.features import Feature

FEATURE = Feature(
    name="crosseval",
    jobs={CrossEvalJob: "compare.crosseval.task:run_crosseval_task"},
    sections=((80, "compare.crosseval.section:crosseval_sections"),),
    order=80,
)
