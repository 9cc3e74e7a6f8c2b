"""The deployment table: each deployed format of one model on the whole test set, against the
source model (``cnn-compare convert`` with ``--onnx``, ``--litert`` or ``--check``, and
``--quantize``). ``deployment_rows`` writes the ONNX files and measures every format;
``check_files`` refuses a file given to ``--check`` before anything is written.

Each format is measured the same way, in its own runtime: the framework's own file in its
framework (the worker, ``compare.convert.task``), ONNX in onnxruntime, LiteRT in its
interpreter (here). ``timed`` predicts the whole test set in batches of ``BATCH`` (the logits,
and a warm-up), then times a second pass (throughput) and ``repeats`` single-image calls, each
on another test image (latency: median and 95th percentile). The row then gives the file's
size, its test accuracy, how many predictions differ from the source's, the largest logit
difference, the timings, and its goal: float formats within the float32 tolerance of the
source's logits; int8 formats within ``INT8_ACCURACY_POINTS`` of their float model's accuracy
and at least ``INT8_SMALLER`` times smaller.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cnn_common.data import Data
from cnn_common.errors import UserError
from cnn_common.machine import BUSY_SHARE, LoadMeter, thread_setting, usable_cores
from compare.convert import litert, onnx_export, quantize
from compare.convert.options import ConvertOptions, JobResults, Source
from compare.engine.layout import LITERT_FILE, LITERT_INT8_FILE, ONNX_FILE, ONNX_INT8_FILE
from compare.report.render import md_table

# max |logit difference| over the largest |source logit| (taken as 1 below 1): float32 kernels
# round differently, and their rounding grows with the values rounded (1e-5 is about 84 float32
# ulps of the largest logit; a conversion error moves logits by far more)
FLOAT32_TOLERANCE = 1e-5
LITERT_WORKER = "keras"  # the framework whose worker writes the LiteRT files: Keras on TensorFlow
CHECK_FORMATS = (".onnx", ".tflite")  # what --check takes
TIMING = "timing."  # the prefix of a worker's timing figures in its logits.npz
BATCH = 1000  # images per call when the whole test set is predicted
INT8_ACCURACY_POINTS = 0.3  # the most an int8 model may lose against its float model
INT8_SMALLER = 3.0  # the least an int8 file must shrink against its float file
HEAD = [
    "format",
    "file",
    "size (KB)",
    "test accuracy",
    "predictions differing",
    "max |logit difference|",
    "latency median (ms)",
    "latency p95 (ms)",
    "throughput (images/s)",
    "goal",
]


def timed(
    predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, repeats: int
) -> tuple[np.ndarray, dict[str, float]]:
    """``(logits (N, K), timing)``: ``latency_ms`` and ``latency_p95_ms`` of ``repeats``
    single-image calls, ``throughput`` (images/s of one timed pass over ``x``), and
    ``other_cores``, the cores other processes kept busy meanwhile (-1 where unknown)."""
    logits = np.concatenate(
        [np.asarray(predict(x[i : i + BATCH])) for i in range(0, len(x), BATCH)]
    )
    meter = LoadMeter()
    start = time.perf_counter()
    for i in range(0, len(x), BATCH):
        predict(x[i : i + BATCH])
    batch_seconds = time.perf_counter() - start
    predict(x[:1])  # the single-image shape warmed up too
    latencies = np.empty(repeats)
    for r in range(repeats):
        image = x[r % len(x) : r % len(x) + 1]
        start = time.perf_counter()
        predict(image)
        latencies[r] = time.perf_counter() - start
    other = float(meter.read(thread_setting()).get("other_cores", -1.0))
    return logits, {
        "latency_ms": float(np.median(latencies) * 1e3),
        "latency_p95_ms": float(np.percentile(latencies, 95) * 1e3),
        "throughput": len(x) / batch_seconds,
        "other_cores": other,
        "busy": float(other > BUSY_SHARE * usable_cores()),  # 1.0 or 0.0: an npz array's
    }


def row(
    name: str,
    file: Path,
    logits: np.ndarray,
    reference: np.ndarray,
    labels: np.ndarray,
    timing: dict[str, float],
) -> dict[str, Any]:
    """One format's figures; ``judge_float`` or ``judge_int8`` adds its goal."""
    predictions = np.asarray(logits).argmax(axis=1)
    max_abs = float(np.abs(np.asarray(logits, np.float64) - reference).max(initial=0.0))
    scale = float(np.abs(reference).max(initial=0.0))  # the largest source logit
    return {
        "format": name,
        "file": str(file),
        "bytes": file.stat().st_size,
        "accuracy": float(np.mean(predictions == labels)),
        "differ": int(np.sum(predictions != reference.argmax(axis=1))),
        "max_abs": max_abs,
        "logit_scale": scale,
        "ulps": max_abs / float(np.spacing(np.float32(scale))),  # float32 ulps at that scale
        **timing,
    }


def allowed(tolerance: float, scale: float) -> float:
    """The largest |logit difference| allowed: ``tolerance`` times ``scale``, the largest
    |source logit| (``tolerance`` itself below 1), since rounding grows with the values."""
    return tolerance * max(1.0, scale)


def judge_float(entry: dict[str, Any], tolerance: float) -> None:
    """Add ``goal`` (its text) and ``ok`` to a float format's ``entry``: its logits within
    ``allowed(tolerance, largest source logit)`` of the source's. The text gives the
    difference in float32 ulps of the largest logit past it."""
    limit = allowed(tolerance, entry["logit_scale"])
    entry["ok"] = entry["max_abs"] <= limit
    entry["goal"] = f"logits within {limit:.2g} ({tolerance:g} of the largest): " + (
        "ok"
        if entry["ok"]
        else f"OVER ({entry['ulps']:.1f} float32 ulps of the largest logit, "
        f"{entry['logit_scale']:.3g})"
    )


def judge_int8(entry: dict[str, Any], float_entry: dict[str, Any]) -> None:
    """Add ``goal``, ``ok``, ``points_lost`` and ``smaller`` to an int8 format's ``entry``:
    within ``INT8_ACCURACY_POINTS`` of its float format's test accuracy, ``INT8_SMALLER``
    times smaller at least."""
    lost = (float_entry["accuracy"] - entry["accuracy"]) * 100
    smaller = float_entry["bytes"] / entry["bytes"]
    entry |= {"points_lost": lost, "smaller": smaller, "float_format": float_entry["format"]}
    entry["ok"] = lost <= INT8_ACCURACY_POINTS and smaller >= INT8_SMALLER
    entry["goal"] = (
        f"{lost:+.2f} points lost (<= {INT8_ACCURACY_POINTS}), {smaller:.2f}x smaller "
        f"(>= {INT8_SMALLER:g}x): {'ok' if entry['ok'] else 'MISSED'}"
    )


def check_files(paths: tuple[Path, ...], x: np.ndarray) -> None:
    """Refuse, before anything is written, a file to check that is missing, of an unknown
    format, or that its runtime cannot load or run on one image ``x (1, H, W, C)``."""
    for path in paths:
        if not path.is_file():
            raise UserError(f"--check {path}: no such file", "give an existing .onnx or .tflite")
        if path.suffix not in CHECK_FORMATS:
            raise UserError(
                f"--check {path}: unknown format {path.suffix or '(no suffix)'!r}",
                "give an ONNX (.onnx) or LiteRT (.tflite) model of this run",
            )
        logits = np.asarray(runner(path)(x))
        if logits.ndim != 2 or len(logits) != 1:
            raise UserError(
                f"--check {path}: gives outputs of shape {logits.shape} for one image, "
                "not logits (1, K)",
                "give a model of this run: input (N, H, W, C) images, output (N, K) logits",
            )


def runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """``predict(x)`` of an ``.onnx`` or ``.tflite`` file in its own runtime."""
    if path.suffix == ".onnx":
        onnx_export.check_available()
        return onnx_export.predictor(path, thread_setting())
    litert.check_available()
    return litert.Runner(path, thread_setting())


def deployment_rows(
    options: ConvertOptions,
    source: Source,
    framework: str,
    own: tuple[Path, float],
    results: JobResults,
    data: Data,
    calibration: np.ndarray | None,
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """The deployment table's rows (judged), and the logits of the first ``--images`` test
    images of every format (the verification table reads the float ones). ``own``: the source
    framework's file and the tolerance its logits are held to; the other files go beside it.
    ``calibration``: the images that calibrate the int8 ONNX model (``--quantize``)."""
    out = own[0].parent
    reference, x_test, labels = results.reference, data.x_test, data.y_test
    rows: list[dict[str, Any]] = []
    first: dict[str, np.ndarray] = {}

    def add(name: str, path: Path, predict: Callable[[np.ndarray], np.ndarray]) -> dict:
        logits, timing = timed(predict, x_test, options.repeats)
        rows.append(row(name, path, logits, reference, labels, timing))
        first[name] = logits[: options.images]
        return rows[-1]

    if results.deployed is not None:
        logits, timing = results.deployed
        rows.append(row(f"{framework} (own file)", own[0], logits, reference, labels, timing))
        judge_float(rows[-1], own[1])
    if options.onnx:
        path = out / ONNX_FILE
        onnx_export.save_onnx(onnx_export.onnx_model(source.model_spec, source.weights), path)
        entry = add("onnx", path, runner(path))
        judge_float(entry, FLOAT32_TOLERANCE)
        if calibration is not None:
            int8_path = out / ONNX_INT8_FILE
            quantize.quantize_onnx(path, int8_path, calibration, onnx_export.INPUT)
            judge_int8(add("onnx int8", int8_path, runner(int8_path)), entry)
            rows[-1]["float_layers"] = quantize.float_layers(int8_path, source.model_spec)
    if options.litert and LITERT_WORKER not in results.failures:
        path = out / LITERT_FILE
        entry = add("litert", path, runner(path))
        judge_float(entry, FLOAT32_TOLERANCE)
        if calibration is not None:
            int8_path = out / LITERT_INT8_FILE
            model = litert.Runner(int8_path, thread_setting())
            judge_int8(add("litert int8", int8_path, model), entry)
            rows[-1]["float_layers"] = model.float_layers(source.model_spec)
    for path in options.check:
        add(f"checked: {path.name}", path, runner(path))
    return rows, first


def cells(entry: dict[str, Any]) -> list[str]:
    """The table's row of one format."""
    return [
        entry["format"],
        Path(entry["file"]).name,
        f"{entry['bytes'] / 1000:,.1f}",
        f"{entry['accuracy']:.2%}",
        f"{entry['differ']:,}",
        f"{entry['max_abs']:.2e}",
        f"{entry['latency_ms']:.3f}",
        f"{entry['latency_p95_ms']:.3f}",
        f"{entry['throughput']:,.0f}",
        entry.get("goal", "-"),
    ]


def notes(record: dict[str, Any]) -> list[str]:
    """What the table does not show: the calibration, the float layers of int8 models, how it
    was timed."""
    lines = [
        f"On all {record['test_images']:,} {record['dataset']} test images, against the source "
        f"model ({record['framework']}); each format timed in its own runtime on "
        f"{record['threads']} thread(s): one pass in batches of {record['batch']} "
        f"(throughput), then {record['repeats']} single-image calls (latency). The "
        "framework's own file is called through its predict_logits, as every command calls "
        "it (Keras's calls the model itself for up to 64 images, Model.predict for more)."
    ]
    calibration = record.get("calibration")
    if calibration:
        lines.append(
            f"int8 calibration: {calibration['images']} {record['dataset']} training images "
            f"drawn with seed {calibration['seed']}."
        )
    for entry in record["rows"]:
        if entry.get("float_layers"):
            lines.append(
                f"{entry['format']}: not quantized, computed in float32: "
                + ", ".join(entry["float_layers"])
                + "."
            )
        elif "float_layers" in entry:
            lines.append(f"{entry['format']}: every layer quantized.")
    busy = [e for e in record["rows"] if e["busy"]]
    if busy:
        lines.append(
            f"{', '.join(e['format'] for e in busy)} timed while other processes kept up to "
            f"{max(e['other_cores'] for e in busy):.1f} cores busy: their speed is not this "
            "CPU's; convert again on an idle machine."
        )
    return lines


def table(record: dict[str, Any]) -> str:
    """The deployment table as Markdown, then its notes."""
    return "\n".join([md_table(HEAD, [cells(e) for e in record["rows"]]), *notes(record)])
