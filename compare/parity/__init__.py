"""``cnn-compare parity``: one set of weights everywhere, K steps: where do the numerics part?

``command`` orchestrates, ``task`` records one framework in a worker, ``locate`` compares the
records, ``section`` and ``figures`` are its parts of the report.
"""

from compare.engine.features import Feature
from compare.parity.job import ParityJob

FEATURE = Feature(
    name="parity",
    help="one set of weights everywhere: where do the numerics part?",
    command="compare.parity.command",
    jobs={ParityJob: "compare.parity.task:run_parity_task"},
    sections=((70, "compare.parity.section:parity_sections"),),
    order=20,
)
