"""``cnn-compare report``: a results folder's report, rendered from the folder alone.

``collect`` reads the folder, every feature's section makes its part from what it read,
``outputs`` puts them in order, ``render`` writes the documents; ``tables``, ``differences``
and ``figures`` serve every section; ``section`` is the report's own (the differences).
"""

from compare.engine.features import Feature

FEATURE = Feature.in_package(
    __name__,
    help="render the report of a results folder again",
    sections=((50, "differences_sections"),),
    order=60,
)
