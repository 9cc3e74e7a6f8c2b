"""``cnn-compare convert``: trained weights in every framework's own file and in ONNX, verified.

``command`` orchestrates, ``task`` writes and reads back one framework's file in a worker,
``onnx_export`` builds the ONNX model.
"""

from compare.convert.job import ConvertJob
from compare.engine.features import Feature

FEATURE = Feature(
    name="convert",
    help="trained weights in every framework's own file and in ONNX, verified",
    command="compare.convert.command",
    jobs={ConvertJob: "compare.convert.task:run_convert_task"},
    order=70,
)
