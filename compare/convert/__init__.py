"""``cnn-compare convert``: trained weights in every framework's own file, in ONNX and LiteRT
(float and int8), verified, and the deployed formats measured.

``command`` orchestrates, ``task`` writes and reads back one framework's file in a worker (and
the LiteRT files in the keras worker), ``onnx_export`` builds the ONNX model, ``litert``
exports and runs LiteRT, ``quantize`` makes the int8 ONNX model and the calibration images,
``deploy`` measures each format, ``section`` is the report's deployment table.
"""

from compare.convert.job import ConvertJob
from compare.engine.features import Feature

FEATURE = Feature.in_package(
    __name__,
    help="trained weights in every framework's own file, ONNX and LiteRT (int8 too), verified",
    job=ConvertJob,
    sections=((85, "deployment_sections"),),
    order=70,
)
