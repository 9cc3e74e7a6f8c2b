"""``cnn-compare serve``: the interactive explorer, every framework side by side on one image.

``command`` starts the server, ``app`` is the web application, ``folder`` reads the results
folder, ``workers`` and ``worker`` are the framework processes that compute, ``wire`` their
messages, ``preprocess`` turns a drawing into an MNIST image and ``explain`` takes one output
value apart; ``static/`` holds the page and its assets.
"""

from compare.engine.features import Feature

FEATURE = Feature.in_package(
    __name__,
    help="explore a results folder in the browser: draw a digit, see every framework",
    order=75,
)
