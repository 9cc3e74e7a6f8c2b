"""``cnn-compare run``: train the frameworks side by side and write a report.

``command`` parses and orchestrates, ``task`` trains one framework in a worker, ``section``
and ``figures`` are its parts of the report.
"""

from compare.engine.features import Feature
from compare.run.job import TrainJob

FEATURE = Feature(
    name="run",
    help="train the frameworks side by side and write a report",
    command="compare.run.command",
    jobs={TrainJob: "compare.run.task:run_train_task"},
    sections=(
        (10, "compare.run.section:results_sections"),
        (30, "compare.run.section:environment_sections"),
        (40, "compare.run.section:failure_sections"),
        (110, "compare.run.section:class_report_sections"),
        (120, "compare.run.section:figure_sections"),
    ),
    order=10,
)
