"""``cnn-compare convert``: trained weights in every framework's own file and in ONNX, verified.

``command`` orchestrates, ``task`` writes and reads back one framework's file in a worker,
``onnx_export`` builds the ONNX model.
"""

from compare.convert.job import ConvertJob
from compare.engine.features import Feature

FEATURE = Feature.in_package(
    __name__,
    help="trained weights in every framework's own file and in ONNX, verified",
    job=ConvertJob,
    order=70,
)
