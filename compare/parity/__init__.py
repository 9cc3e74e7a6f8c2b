"""``cnn-compare parity``: one set of weights everywhere, K steps: where do the numerics part?

``command`` orchestrates, ``task`` records one framework in a worker, ``locate`` compares the
records, ``section`` and ``figures`` are its parts of the report.
"""

from compare.engine.features import Feature
from compare.parity.job import ParityJob

FEATURE = Feature.in_package(
    __name__,
    help="one set of weights everywhere: where do the numerics part?",
    job=ParityJob,
    sections=((70, "parity_sections"),),
    order=20,
)
