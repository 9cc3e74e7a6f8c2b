"""``cnn-compare rosetta``: the same layer in every framework, their sources side by side.

``command`` orchestrates, ``task`` reads one framework's sources in a worker, ``page`` writes
``rosetta.html``, ``section`` is its part of the report.
"""

from compare.engine.features import Feature
from compare.rosetta.job import RosettaJob

FEATURE = Feature(
    name="rosetta",
    help="the same layer in every framework: their sources side by side",
    command="compare.rosetta.command",
    jobs={RosettaJob: "compare.rosetta.task:run_rosetta_task"},
    sections=((100, "compare.rosetta.section:rosetta_sections"),),
    order=50,
)
