"""``cnn-compare rosetta``: the same layer in every framework, their sources side by side.

``command`` orchestrates, ``task`` reads one framework's sources in a worker, ``page`` writes
``rosetta.html``, ``section`` is its part of the report.
"""

from compare.engine.features import Feature
from compare.rosetta.job import RosettaJob

FEATURE = Feature.in_package(
    __name__,
    help="the same layer in every framework: their sources side by side",
    job=RosettaJob,
    sections=((100, "rosetta_sections"),),
    order=50,
)
