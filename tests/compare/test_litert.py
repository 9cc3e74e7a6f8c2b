"""LiteRT through Keras's export: a model that needs TensorFlow ops outside the LiteRT builtins
is refused with their names; the converter's message is read for them; a damaged file is a
user error. (Every spec's model converts: ``test_deploy.py``.)"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cnn_common.errors import UserError
from compare.convert import litert

pytestmark = pytest.mark.skipif(not litert.available(), reason="ai-edge-litert is not installed")
ROOT = Path(__file__).resolve().parents[2]

# MatrixInverse has a TensorFlow kernel only (a "select TF op"); BesselI0e has none in LiteRT
NOT_BUILTIN = textwrap.dedent(
    """
    import keras, tensorflow as tf
    from cnn_common.errors import UserError
    from compare.convert import litert

    class Odd(keras.layers.Layer):
        def call(self, x):
            return tf.math.bessel_i0e(x) + tf.linalg.inv(x)

    images = keras.Input((4, 4))
    try:
        litert.export(keras.Model(images, Odd()(images)), {path!r})
    except UserError as exc:
        print("REFUSED", exc.message, "|", exc.hint)
    """
)


def test_a_model_needing_tensorflow_ops_is_refused_with_their_names(tmp_path: Path) -> None:
    path = tmp_path / "odd.tflite"
    done = subprocess.run(
        [sys.executable, "-c", NOT_BUILTIN.format(path=str(path))],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "KERAS_BACKEND": "tensorflow", "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    refused = done.stdout.split("REFUSED ", 1)[1]
    assert "needs TensorFlow ops outside the LiteRT builtins: MatrixInverse, BesselI0e" in refused
    assert "--onnx" in refused and not path.exists()


def test_the_converters_message_is_read_for_the_ops() -> None:
    message = (
        "Some ops are not supported by the native TFLite runtime ...\n"
        "TF Select ops: MatrixInverse, Cumprod\n"
        "Details:\n\ttf.MatrixInverse(tensor<?x4x4xf32>) -> (tensor<?x4x4xf32>)\n"
        "Custom ops: BesselI0e\n"
    )
    assert litert.unsupported_ops(message) == ["MatrixInverse", "Cumprod", "BesselI0e"]
    assert litert.unsupported_ops("some other converter failure") == []


@pytest.mark.parametrize("content", [b"", b"TFL3" + bytes(600), b"not a flatbuffer at all"])
def test_a_damaged_file_is_a_user_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.tflite"
    path.write_bytes(content)
    with pytest.raises(UserError, match="is not a LiteRT model that can be loaded") as caught:
        litert.Runner(path)
    assert str(path) in caught.value.message and "--litert" in caught.value.hint
