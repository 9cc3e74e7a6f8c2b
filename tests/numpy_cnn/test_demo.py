"""numpy_cnn.demo and ``numpy-cnn demo``: the walk-throughs compute what they print."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from numpy_cnn import demo


def test_forward_demo_numbers(tmp_path: Path, capsys) -> None:
    values = demo.forward_demo(tmp_path)
    np.testing.assert_allclose(values["z1"], [[1.0, 0.5, -0.65]])
    np.testing.assert_allclose(values["a1"], [[1.0, 0.5, 0.0]])
    np.testing.assert_allclose(values["z2"], [[0.85, -0.6]])
    p0 = np.exp(0.85) / (np.exp(0.85) + np.exp(-0.6))
    np.testing.assert_allclose(values["probs"][0, 0], p0)
    np.testing.assert_allclose(values["loss"], -np.log(p0))
    out = capsys.readouterr().out
    assert "z1[2] = 0.1 + 1*0.25 + 2*-0.5 = -0.65" in out
    assert (tmp_path / "forward.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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


def test_demo_commands(data_dir: Path, tmp_path: Path) -> None:
    for which in ("forward", "conv"):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "numpy_cnn",
                "demo",
                which,
                "--out",
                str(tmp_path),
                "--data-dir",
                str(data_dir),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "wrote" in done.stdout
    assert (tmp_path / "forward.png").exists() and (tmp_path / "conv.png").exists()
