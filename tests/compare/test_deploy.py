"""`cnn-compare convert --onnx --litert --quantize int8`: the deployment table's figures are
checked against the tests' own evaluation of every file it wrote (accuracy, differing
predictions, logit difference, size), the report shows the table, and bad input exits 2 with
nothing written. The int8 accuracy goals on trained models are tested beside the runs that
train them (``test_run.py``, ``test_family_accuracy.py``)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cnn_common.data import training_data
from cnn_common.results import RunResult
from cnn_common.spec import ModelSpec, TrainSpec
from cnn_common.weights import init_weights, load_weights, save_weights
from compare.__main__ import main
from compare.convert import deploy, litert, onnx_export, quantize
from compare.engine import registry
from compare.engine.layout import CONVERT_FILE, CONVERTED_DIR, REPORT_MD, RESULT_FILE, run_dir
from tests.compare.test_convert import cli, env, perturbed

pytest.importorskip("onnxruntime")
SPEC = ModelSpec()


def weight_file(folder: Path) -> Path:
    """Canonical weights of the seed model: the initial ones, moved off their symmetric start
    so that the classes differ (NumPy computes the source's logits)."""
    path = folder / "w.safetensors"
    weights = perturbed(SPEC, init_seed=0, init_dtype="float32", scale=0.05, noise_seed=1)
    save_weights(path, weights, SPEC)
    return path


def source_logits(path: Path, x: np.ndarray) -> np.ndarray:
    numpy = registry.load("numpy")
    weights, spec, _ = load_weights(path)
    model = numpy.build(spec, "float32")
    numpy.set_weights(model, weights)
    return np.asarray(numpy.predict_logits(model, x), np.float64)


@pytest.mark.skipif(not litert.available(), reason="ai-edge-litert is not installed")
def test_every_format_figures_match_their_own_evaluation(
    tmp_path: Path, data_dir: Path, capsys
) -> None:
    source = weight_file(tmp_path)
    args = ["convert", str(source), "--to", "numpy", "--onnx", "--litert", "--quantize", "int8"]
    args += ["--calibration", "64", "--calibration-seed", "3", "--repeats", "4"]
    code = main([*args, "--data-dir", str(data_dir)])
    printed = capsys.readouterr().out
    out = tmp_path / "w-converted"
    record = json.loads((out / CONVERT_FILE).read_text())
    table = record["deployment"]
    assert code == (0 if all(e["ok"] for e in [*record["rows"], *table["rows"]]) else 1)
    data = training_data("mnist", TrainSpec(), root=data_dir)
    reference = source_logits(source, data.x_test)  # (10000, 10)
    assert table["test_images"] == len(data.x_test) == 10_000
    assert table["calibration"] == {"images": 64, "seed": 3}
    runners = {
        "numpy (own file)": lambda x: registry.load("numpy").predict_logits(
            registry.load("numpy").load(out / "numpy.npz"), x
        ),
        "onnx": onnx_export.predictor(out / "model.onnx"),
        "onnx int8": onnx_export.predictor(out / "model.int8.onnx"),
        "litert": litert.Runner(out / "model.tflite"),
        "litert int8": litert.Runner(out / "model.int8.tflite"),
    }
    assert [e["format"] for e in table["rows"]] == list(runners)
    for entry in table["rows"]:
        logits = np.concatenate(
            [runners[entry["format"]](data.x_test[i : i + 2500]) for i in range(0, 10_000, 2500)]
        ).astype(np.float64)
        predictions = logits.argmax(axis=1)
        assert entry["accuracy"] == np.mean(predictions == data.y_test), entry["format"]
        assert entry["differ"] == np.sum(predictions != reference.argmax(axis=1)), entry
        assert entry["max_abs"] == pytest.approx(np.abs(logits - reference).max(), rel=1e-3)
        assert entry["bytes"] == Path(entry["file"]).stat().st_size
        assert 0 < entry["latency_ms"] <= entry["latency_p95_ms"] and entry["throughput"] > 0
        assert f"| {entry['format']} | {Path(entry['file']).name} |" in printed
    rows = {e["format"]: e for e in table["rows"]}
    for name in ("numpy (own file)", "onnx", "litert"):  # float: the source's logits
        assert rows[name]["ok"] and rows[name]["max_abs"] <= 1e-5 and rows[name]["differ"] == 0
    for name, float_name in (("onnx int8", "onnx"), ("litert int8", "litert")):
        int8, floats = rows[name], rows[float_name]
        assert int8["smaller"] == pytest.approx(floats["bytes"] / int8["bytes"])
        assert int8["smaller"] >= 3.0 and int8["float_layers"] == []  # every layer quantized
        lost = (floats["accuracy"] - int8["accuracy"]) * 100
        assert int8["points_lost"] == pytest.approx(lost)
        assert int8["ok"] == (lost <= 0.3)
        assert int8["max_abs"] > 1e-4  # int8 really rounds: not the float model again
    assert "int8 calibration: 64 mnist training images drawn with seed 3." in printed
    umask = os.umask(0)
    os.umask(umask)
    for path in out.rglob("*"):  # every file written can be shared: a plain open's mode
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path
    # the verification table also holds the float deployed formats, on the first 1,000 images
    verified = {e["target"]: e for e in record["rows"]}
    assert set(verified) == {"numpy", "onnx", "litert"} and all(e["ok"] for e in verified.values())


def test_the_float_goal_scales_with_the_largest_logit() -> None:
    """1e-5 of the largest source logit, absolute below 1: 1.4e-5 on logits of 12.4 (14
    float32 ulps, a residual network's rounding) passes, 2e-4 there does not, and on logits
    below 1 the limit stays 1e-5."""

    def judged(max_abs: float, scale: float) -> dict:
        ulps = max_abs / float(np.spacing(np.float32(scale)))
        entry = {"max_abs": max_abs, "logit_scale": scale, "ulps": ulps}
        deploy.judge_float(entry, deploy.FLOAT32_TOLERANCE)
        return entry

    assert (
        judged(1.4e-5, 12.4)["ok"]
        and "within 0.00012 (1e-05 of the largest)" in (judged(1.4e-5, 12.4)["goal"])
    )
    over = judged(2e-4, 12.4)
    assert not over["ok"] and "OVER (209.7 float32 ulps of the largest logit, 12.4)" in over["goal"]
    assert judged(0.9e-5, 0.5)["ok"] and not judged(1.1e-5, 0.5)["ok"]


def test_calibration_images_are_drawn_once_by_their_seed() -> None:
    x = np.arange(200, dtype=np.float32).reshape(200, 1, 1, 1)
    indices, images = quantize.calibration_images(x, 50, seed=7)
    again, _ = quantize.calibration_images(x, 50, seed=7)
    other, _ = quantize.calibration_images(x, 50, seed=8)
    assert len(set(indices)) == 50 and np.array_equal(indices, again)  # no repeats, repeatable
    assert not np.array_equal(indices, other)
    assert np.array_equal(images[:, 0, 0, 0], indices)  # the images are those indices
    assert len(quantize.calibration_images(x, 200)[0]) == 200  # the whole set at most
    with pytest.raises(Exception, match="must hold 1 to 200 images"):
        quantize.calibration_images(x, 201)


def test_a_layer_left_in_float_is_named(tmp_path: Path) -> None:
    """``float_layers`` finds a layer onnxruntime left unquantized (excluded here on purpose),
    and none when every layer is quantized."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    path = tmp_path / "model.onnx"
    onnx_export.save_onnx(onnx_export.onnx_model(SPEC, init_weights(SPEC)), path)
    images = np.random.default_rng(0).random((20, 28, 28, 1), dtype=np.float32)
    quantize.quantize_onnx(path, tmp_path / "all.onnx", images, onnx_export.INPUT)
    assert quantize.float_layers(onnx.load(tmp_path / "all.onnx"), SPEC) == []

    class One:
        def __init__(self) -> None:
            self.feeds = iter([{onnx_export.INPUT: images}])

        def get_next(self) -> dict | None:
            return next(self.feeds, None)

    partial = tmp_path / "partial.onnx"
    quantize_static(
        str(path),
        str(partial),
        One(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=["dense1"],
    )
    assert quantize.float_layers(onnx.load(partial), SPEC) == ["dense1"]


def test_the_report_shows_each_runs_deployment_table(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "out"
    train = ["run", "--frameworks", "numpy", "--out", str(out), "--quiet"]
    train += ["--subset", "300", "--epochs", "1"]
    subprocess.run(cli(*train), check=True, capture_output=True, env=env(data_dir), timeout=600)
    run = run_dir(out, "numpy", 0)
    done = subprocess.run(
        cli("convert", str(run), "--to", "numpy", "--onnx", "--repeats", "3"),
        capture_output=True,
        text=True,
        env=env(data_dir),
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads((run / CONVERTED_DIR / CONVERT_FILE).read_text())["deployment"]
    subprocess.run(cli("report", str(out)), check=True, capture_output=True, timeout=600)
    report = (out / REPORT_MD).read_text()
    assert "## Deployment: numpy-seed0" in report
    for entry in record["rows"]:  # each row as the table printed it
        cells = [cell.replace("|", "\\|") for cell in deploy.cells(entry)]
        assert "| " + " | ".join(cells) + " |" in report


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("corrupt tflite", "is not a LiteRT model that can be loaded"),
        ("truncated onnx", "is not an ONNX model onnxruntime can load"),
        ("unknown format", "unknown format '.pt'"),
        ("calibration too large", "the calibration set must hold 1 to 55,000 images"),
        ("quantize alone", "--quantize int8 quantizes the deployed formats, and none"),
        ("no weights", "no trained weights"),
        ("no repeats", "--repeats must be at least 1"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    tmp_path: Path, data_dir: Path, capsys, case: str, message: str
) -> None:
    source = weight_file(tmp_path)
    model = tmp_path / "made"
    model.mkdir()
    onnx_export.save_onnx(onnx_export.onnx_model(SPEC, init_weights(SPEC)), model / "m.onnx")
    (model / "t.onnx").write_bytes((model / "m.onnx").read_bytes()[:5000])
    (model / "c.tflite").write_bytes(b"TFL3" + bytes(range(256)) * 8)
    (model / "m.pt").write_bytes(b"torch")
    unfinished = tmp_path / "runs" / "numpy-seed0"
    unfinished.mkdir(parents=True)
    # a run record that says it finished, and no weights beside it
    RunResult("numpy", "numpy", "mnist", {}, {}, "shared", "cpu", {}, 0).to_json(
        unfinished / RESULT_FILE
    )
    args = {
        "corrupt tflite": [str(source), "--litert", "--check", str(model / "c.tflite")],
        "truncated onnx": [str(source), "--onnx", "--check", str(model / "t.onnx")],
        "unknown format": [str(source), "--check", str(model / "m.pt")],
        "calibration too large": [str(source), "--onnx", "--quantize", "int8"]
        + ["--calibration", "55001"],
        "quantize alone": [str(source), "--quantize", "int8"],
        "no weights": [str(unfinished), "--onnx"],
        "no repeats": [str(source), "--onnx", "--repeats", "0"],
    }[case]
    if case == "corrupt tflite" and not litert.available():
        pytest.skip("ai-edge-litert is not installed")
    assert main(["convert", *args, "--data-dir", str(data_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnn-compare: error: ") and message in err and "\n  fix: " in err
    assert "Traceback" not in err
    assert not (tmp_path / "w-converted").exists()  # nothing written, not even the folder
    assert not (unfinished / CONVERTED_DIR).exists()


def test_an_unknown_quantization_format_exits_2_naming_the_choices(
    tmp_path: Path, data_dir: Path
) -> None:
    source = weight_file(tmp_path)
    done = subprocess.run(
        cli("convert", str(source), "--onnx", "--quantize", "int4"),
        capture_output=True,
        text=True,
        env=env(data_dir),
        timeout=300,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--quantize: invalid choice: 'int4' (choose from 'int8')" in done.stderr
    assert not (tmp_path / "w-converted").exists()
