"""``cnn-compare run``: train the frameworks side by side and write a report.

``command`` parses and orchestrates, ``task`` trains one framework in a worker, ``section``
and ``figures`` are its parts of the report.
"""

from compare.engine.features import Feature
from compare.run.job import TrainJob

FEATURE = Feature.in_package(
    __name__,
    help="train the frameworks side by side and write a report",
    job=TrainJob,
    sections=(
        (10, "results_sections"),
        (30, "environment_sections"),
        (40, "failure_sections"),
        (110, "class_report_sections"),
        (120, "figure_sections"),
    ),
    order=10,
)
