"""``cnn-compare bench``: where the time goes.

``command`` is the command, ``task`` times one framework in a fresh worker, ``measure`` runs
the processes and reduces their records, ``tables`` formats the results, ``scripts`` serves
the scripts in ``benchmarks/``, ``section`` and ``figures`` are its parts of the report.
"""

from compare.bench.job import BenchJob
from compare.engine.features import Feature

FEATURE = Feature.in_package(
    __name__,
    help="where the time goes: throughput, share of the machine's peak, memory, phases",
    job=BenchJob,
    sections=((90, "bench_sections"),),
    order=30,
)
