"""`cnn-compare convert`: every framework's trained weights in every framework's own file and
in ONNX, each read back with logits within 1e-5 of the source's on 1,000 test images; NumPy's
own file is an .npz; bad input exits 2 with the fix."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import numpy_cnn
from cnn_common.errors import DataError
from cnn_common.spec import ConvBlock, DenseLayer, ModelSpec
from cnn_common.weights import init_weights, save_weights
from compare.__main__ import main
from compare.engine import registry
from compare.engine.layout import CONVERT_FILE, run_dir

# 'same' padding with an odd total (stride 2, kernel 3 on 14x14: pads (0, 1)), tanh, dropout.
SAME = ModelSpec(
    conv=(
        ConvBlock(filters=4, kernel_size=3, padding="same", activation="tanh"),
        ConvBlock(filters=6, kernel_size=3, stride=2, padding="same", pool_size=0),
    ),
    dense=(DenseLayer(units=12, activation="tanh", dropout=0.25),),
)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "compare", *args]


def env(data_dir: Path) -> dict[str, str]:
    return {**os.environ, "CNN_DATA_DIR": str(data_dir)}


def rows(out: Path) -> dict[str, dict]:
    return {row["target"]: row for row in json.loads((out / CONVERT_FILE).read_text())["rows"]}


def perturbed(
    spec: ModelSpec, init_seed: int, init_dtype: str, scale: float, noise_seed: int
) -> dict[str, np.ndarray]:
    """float32 weights of ``spec``: its initial ones plus ``scale`` times standard normal noise
    (off the symmetric start, so that the classes' logits differ)."""
    rng = np.random.default_rng(noise_seed)
    return {
        name: (value + scale * rng.standard_normal(value.shape)).astype(np.float32)
        for name, value in init_weights(spec, init_seed, init_dtype).items()
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, list[str]]:
    """A few steps of numpy, keras, lightning and pytorch (those installed) on 500 images."""
    names = [
        n for n in ("numpy", "keras", "lightning", "pytorch") if not registry.missing_modules(n)
    ]
    out = tmp_path_factory.mktemp("convert") / "train"
    subprocess.run(
        [
            *cli("run", "--frameworks", ",".join(names), "--out", str(out)),
            *("--subset", "500", "--eval-subset", "1000", "--epochs", "1", "--quiet"),
        ],
        check=True,
        capture_output=True,
        timeout=900,
        env=env(data_dir),
    )
    return out, names


@pytest.mark.slow
def test_every_run_converts_to_every_framework_and_onnx(trained, data_dir: Path) -> None:
    """The issue's acceptance: each trained run to all, ONNX included, max |logit difference|
    <= 1e-5 on 1,000 test images for every pair. The conversions run side by side: they are
    mostly process starts."""
    out, names = trained
    every = [n for n in registry.frameworks() if not registry.missing_modules(n)]
    umask = os.umask(0)
    os.umask(umask)
    procs = {
        name: subprocess.Popen(
            cli("convert", str(run_dir(out, name, 0)), "--to", "all", "--onnx", "--repeats", "3"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env(data_dir),
        )
        for name in names
    }
    outputs = {name: proc.communicate(timeout=900)[0] for name, proc in procs.items()}
    for name, output in outputs.items():
        assert procs[name].returncode == 0, output
        converted = run_dir(out, name, 0) / "converted"
        record = json.loads((converted / CONVERT_FILE).read_text())
        assert (record["framework"], record["images"], record["dtype"]) == (name, 1000, "float32")
        got = rows(converted)
        assert list(got) == [*every, "onnx"]
        for target, row in got.items():
            assert row["max_abs"] <= 1e-5, f"{name} -> {target}: {row}"
            assert Path(row["file"]).is_file()
        # every file it writes can be shared as the report's are: the mode of a plain open
        for path in converted.rglob("*"):
            if path.is_file():
                assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path
        assert got["numpy"]["file"].endswith("numpy.npz") and "| onnx |" in output


def test_bare_weight_file_same_padding_tanh_dropout(tmp_path: Path, data_dir: Path, capsys) -> None:
    """A canonical weight file (NumPy computes its logits) of a spec with asymmetric 'same'
    padding, tanh and dropout converts to NumPy, PyTorch and ONNX."""
    pytest.importorskip("onnxruntime")
    targets = [n for n in ("numpy", "pytorch") if not registry.missing_modules(n)]
    weights = perturbed(SAME, init_seed=2, init_dtype="float64", scale=0.1, noise_seed=0)
    source = tmp_path / "w.safetensors"
    save_weights(source, weights, SAME)
    args = ["convert", str(source), "--to", ",".join(targets), "--onnx"]
    args += ["--images", "300", "--repeats", "3"]
    assert main([*args, "--data-dir", str(data_dir)]) == 0, capsys.readouterr()
    out = tmp_path / "w-converted"
    got = rows(out)
    assert list(got) == [*targets, "onnx"]
    assert all(row["ok"] and row["max_abs"] <= 1e-5 for row in got.values()), got
    again = numpy_cnn.load(out / "numpy.npz")  # NumPy's own file holds the weights as given
    assert again.spec == SAME
    for name, value in weights.items():
        np.testing.assert_array_equal(again.weights[name], value)


def test_numpy_file_is_an_npz_and_load_refuses_others(tmp_path: Path) -> None:
    assert registry.get("numpy").model_suffix == ".npz"
    model = numpy_cnn.build(SAME, "float64")
    path = tmp_path / "m.npz"
    numpy_cnn.save(model, path)
    with np.load(path) as archive:
        assert json.loads(str(archive["spec"]))["model"]["conv"][1]["stride"] == 2
        assert archive["weights/conv1.kernel"].dtype == np.float64
    canonical = tmp_path / "w.safetensors"
    save_weights(canonical, init_weights(SAME), SAME)
    with pytest.raises(DataError, match="is not a numpy_cnn model file") as caught:
        numpy_cnn.load(canonical)
    assert str(canonical) in caught.value.message and "load_weights" in caught.value.hint


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("empty folder", "is not a run folder"),
        ("junk file", "is not a readable safetensors weight file"),
        ("missing", "does not exist"),
        ("unknown target", "unknown framework(s) ['caffe']"),
        ("no images", "--images must be at least 1"),
    ],
)
def test_bad_input_exits_2_with_the_fix(tmp_path: Path, capsys, case: str, message: str) -> None:
    weights = tmp_path / "w.safetensors"
    save_weights(weights, init_weights(ModelSpec()), ModelSpec())
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    args = {
        "empty folder": [str(tmp_path / "empty")],
        "junk file": [str(tmp_path / "junk.safetensors")],
        "missing": [str(tmp_path / "nothing")],
        "unknown target": [str(weights), "--to", "numpy,caffe"],
        "no images": [str(weights), "--images", "0"],
    }[case]
    assert main(["convert", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnn-compare: error: ") and message in err and "\n  fix: " in err
    assert not (tmp_path / "w-converted").exists()  # nothing written
