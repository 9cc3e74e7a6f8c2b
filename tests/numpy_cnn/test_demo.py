"""numpy_cnn.demo and ``numpy-cnn demo``: the walk-throughs compute what they print."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import numpy_cnn
from cnn_common.data import Data
from cnn_common.errors import UserError
from cnn_common.spec import ConvBlock, ModelSpec
from cnn_common.weights import init_weights, save_weights
from numpy_cnn import demo
from numpy_cnn.network import make_network

PNG = b"\x89PNG\r\n\x1a\n"


def test_forward_demo_is_the_real_forward_pass(mnist: Data, tmp_path: Path, capsys) -> None:
    values = demo.forward_demo(tmp_path, index=3)
    spec = ModelSpec()
    model = make_network(spec, init_weights(spec, 0, "float32"))
    np.testing.assert_array_equal(values["input"], mnist.x_test[3:4])
    # The walk-through is the model, op by op: the same maps to the last bit...
    maps = numpy_cnn.feature_maps(model, values["input"])
    for layer in ("conv1", "conv2"):
        np.testing.assert_array_equal(values[f"{layer}/relu"], maps[layer])
    for layer in ("pool1", "pool2"):
        np.testing.assert_array_equal(values[layer], maps[layer])
    # ...and the logits of predict, which runs each convolution and its pooling as one
    # operation (numpy_cnn.fused.conv_pool_forward: BLAS adds the same products in another order).
    logits = numpy_cnn.predict_logits(model, values["input"])
    np.testing.assert_allclose(values["logits"], logits, rtol=1e-5, atol=1e-6)
    assert values["conv1"].shape == (1, 24, 24, 16) and values["pool2"].shape == (1, 4, 4, 32)
    assert values["flatten"].shape == (1, 512) and values["dense1/relu"].min() >= 0
    assert int(values["label"]) == mnist.y_test[3]
    probs = values["probs"][0]
    np.testing.assert_allclose(probs.sum(), 1, rtol=1e-6)
    np.testing.assert_allclose(values["loss"], -np.log(probs[mnist.y_test[3]]), rtol=1e-5)
    out = capsys.readouterr().out
    for text in (
        "mnist test image 3",
        "conv1  (conv)  -> (1, 24, 24, 16)",
        "ops.conv2d_forward(x, conv1.kernel (5, 5, 1, 16)",
        "conv1/relu  (activation)",
        "pool1  (pool)  -> (1, 12, 12, 16)",
        "flatten  (flatten)  -> (1, 512)",
        "logits  (dense)  -> (1, 10)",
        f"true label {mnist.y_test[3]}",
        f"cross-entropy: -log p[{mnist.y_test[3]}] = {float(values['loss']):.4f}",
    ):
        assert text in out
    assert (tmp_path / "forward.png").read_bytes()[:8] == PNG


def test_forward_demo_of_trained_weights_and_other_specs(tmp_path: Path, capsys) -> None:
    """A weights file brings its own spec (here 'same' padding, tanh, one conv block)."""
    spec = ModelSpec(
        input_shape=(12, 12, 1),
        conv=(ConvBlock(filters=3, kernel_size=3, padding="same", activation="tanh"),),
        dense=(),
        num_classes=4,
    )
    weights = init_weights(spec, 5, "float64")
    save_weights(tmp_path / "w.safetensors", weights, spec)
    image = np.random.default_rng(0).uniform(size=(12, 12, 1))
    values = demo.forward_demo(
        tmp_path, weights_file=tmp_path / "w.safetensors", image=image, label=2
    )
    model = make_network(spec, weights, "float64")
    np.testing.assert_allclose(
        values["logits"], numpy_cnn.predict_logits(model, image[None]), rtol=1e-12
    )
    assert values["conv1"].shape == (1, 12, 12, 3) and "conv1/tanh" in values
    assert "w.safetensors" in capsys.readouterr().out


def test_forward_demo_index_out_of_range(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--index 10000"):
        demo.forward_demo(tmp_path, data_dir=data_dir, index=10000)


def test_conv_demo_shapes(tmp_path: Path, capsys) -> None:
    digit = np.zeros((28, 28), np.float32)
    digit[6:22, 12:16] = 1.0  # a vertical bar: the edge filter answers on both its sides
    shapes = demo.conv_demo(tmp_path, image=digit)
    assert shapes["conv valid, stride 1"] == (24, 24)
    assert shapes["pool valid, stride 1"] == (12, 12)
    assert shapes["conv valid, stride 2"] == (12, 12)
    assert shapes["conv same, stride 1"] == (28, 28)
    assert shapes["conv same, stride 2"] == (14, 14)
    assert shapes["pool same, stride 2"] == (7, 7)
    assert "same, stride 2" in capsys.readouterr().out
    assert (tmp_path / "conv.png").stat().st_size > 1000


def test_conv_demo_one_colour_scale_per_row(tmp_path: Path, monkeypatch) -> None:
    """Every panel has a colour bar; a row's convolved and pooled maps share one scale,
    symmetric about 0 (white is 0)."""
    import matplotlib.figure

    figures: list[matplotlib.figure.Figure] = []
    original = matplotlib.figure.Figure.savefig

    def keep(self: matplotlib.figure.Figure, *args, **kwargs) -> None:
        figures.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    digit = np.zeros((28, 28), np.float32)
    digit[6:22, 12:16] = 1.0
    demo.conv_demo(tmp_path, image=digit)
    (fig,) = figures
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 12 and len(fig.axes) == 24  # 4 rows x 3 panels, each with its bar
    for row in range(4):
        conv, pooled = panels[3 * row + 1].images[0], panels[3 * row + 2].images[0]
        assert conv.get_clim() == pooled.get_clim()
        low, high = conv.get_clim()
        assert low == -high and high == pytest.approx(np.abs(conv.get_array()).max())


def test_demo_commands(data_dir: Path, tmp_path: Path) -> None:
    printed = {}
    for which, extra in (("forward", ["--index", "7"]), ("conv", [])):
        printed[which] = subprocess.run(
            [sys.executable, "-m", "numpy_cnn", "demo", which, "--out", str(tmp_path),
             "--data-dir", str(data_dir), *extra],
            capture_output=True,
            text=True,
            check=True,
        ).stdout  # fmt: skip
        assert "wrote" in printed[which]
    assert "mnist test image 7" in printed["forward"] and "predicted class" in printed["forward"]
    assert (tmp_path / "forward.png").exists() and (tmp_path / "conv.png").exists()
