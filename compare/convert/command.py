"""``cnn-compare convert``: trained weights in every framework's own file and in ONNX, each
verified by reading it back.

The source is a run folder of ``cnn-compare run`` (``run.json`` names the framework that
trained it) or a canonical ``.safetensors`` weight file. Its weights are canonical, so each
target framework (in a worker process of its own, ``compare.convert.task``) builds its model,
sets them, writes its own file (``<framework><suffix>``: ``.npz``, ``.keras``, ``.pt``,
``.ckpt``), reads the file back and computes the logits of the first N test images. The
source's own logits come from the source framework; the ONNX model
(``compare.convert.onnx_export``) runs in onnxruntime here. A file is verified when its logits
are within the tolerance of the source's, relative to its largest logit (absolute below 1):
1e-5 in float32 (kernels round differently), 1e-10 in float64 when both frameworks compute
float64 throughout (``FrameworkInfo.float64_exact``).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from cnn_common.data import training_data
from cnn_common.errors import UserError
from cnn_common.files import atomic_write_json
from cnn_common.machine import thread_setting
from cnn_common.results import RunResult
from cnn_common.weights import load_weights
from compare.convert import deploy, litert, onnx_export
from compare.convert import quantize as quantization
from compare.convert.job import ConvertJob
from compare.convert.options import LATENCY_REPEATS, ConvertOptions, JobResults, Source
from compare.engine import registry
from compare.engine.launch import launch, read_failure
from compare.engine.layout import (
    CONVERT_FILE,
    CONVERT_JOBS_DIR,
    CONVERT_RECORD,
    CONVERTED_DIR,
    LITERT_FILE,
    LITERT_INT8_FILE,
    LOG_FILE,
    ONNX_FILE,
    RESULT_FILE,
    WEIGHTS_FILE,
)
from compare.engine.lock import check_out_folder
from compare.engine.options import from_args
from compare.report.render import md_table

FLOAT64_TOLERANCE = 1e-10  # only the order of summation differs
SOURCE_HINT = (
    "give a run folder of `cnn-compare run` (OUT/runs/<framework>-seed<S>/, holding run.json "
    "and weights.safetensors) or a canonical .safetensors weight file"
)


def read_source(path: Path) -> Source:
    """The run folder or weight file ``path``; anything else raises ``UserError``."""
    framework = next(iter(registry.frameworks()))  # the first in report order: numpy
    dataset = "mnist"
    if path.is_dir():
        try:
            run = RunResult.from_json(path / RESULT_FILE)
        except (OSError, ValueError, TypeError, KeyError):
            raise UserError(
                f"{path} is not a run folder: no readable {RESULT_FILE}", SOURCE_HINT
            ) from None
        if run.status != "ok" or not (path / WEIGHTS_FILE).is_file():
            raise UserError(
                f"the run in {path} did not finish (status {run.status!r}): no trained weights",
                "finish it (`cnn-compare run --resume`) or convert another run",
            )
        weights_file, framework, dataset = path / WEIGHTS_FILE, run.framework, run.dataset
        default_out = path / CONVERTED_DIR
    elif path.is_file():
        weights_file, default_out = path, path.with_name(f"{path.stem}-converted")
    else:
        raise UserError(f"{path} does not exist", SOURCE_HINT)
    try:
        weights, model_spec, train_spec = load_weights(weights_file)
    except UserError as exc:
        raise UserError(exc.message, SOURCE_HINT) from None
    dtype = weights["logits.kernel"].dtype.name
    train_spec = dataclasses.replace(train_spec, dtype=dtype)
    return Source(weights_file, weights, model_spec, train_spec, framework, dataset, default_out)


def choose_targets(text: str) -> tuple[list[str], list[str]]:
    """``(targets, skipped)``: ``all`` is every registered framework that is installed (the
    others skipped); named frameworks must be known and installed."""
    if text == "all":
        names = list(registry.frameworks())
        return (
            [n for n in names if not registry.missing_modules(n)],
            [n for n in names if registry.missing_modules(n)],
        )
    names = registry.parse_frameworks(text)
    for name in names:
        registry.check_installed(name)
    return names, []


def tolerance(dtype: str, frameworks: list[str]) -> float:
    """The largest |logit difference| allowed between files of ``frameworks``."""
    exact = dtype == "float64" and all(registry.get(n).float64_exact for n in frameworks)
    return FLOAT64_TOLERANCE if exact else deploy.FLOAT32_TOLERANCE


def model_file(out: Path, name: str) -> Path:
    """``OUT/<framework><suffix>``: the framework's own file."""
    return out / f"{name}{registry.get(name).model_suffix}"


def row(
    target: str, file: Path, logits: np.ndarray | None, reference: np.ndarray, tol: float
) -> dict[str, Any]:
    """One line of the table and of ``convert.json``; ``logits`` None: the target failed.
    ``tol`` is relative to the largest |source logit| (``deploy.allowed``); the entry's
    ``tolerance`` is the absolute limit it gives."""
    limit = deploy.allowed(tol, float(np.abs(reference).max(initial=0.0)))
    entry: dict[str, Any] = {"target": target, "file": str(file), "tolerance": limit}
    if logits is None:
        return {**entry, "max_abs": None, "ok": False}
    diff = float(np.max(np.abs(np.asarray(logits, np.float64) - reference), initial=0.0))
    return {**entry, "max_abs": diff, "ok": diff <= limit}


def run_jobs(
    options: ConvertOptions, source: Source, framework: str, targets: list[str], out: Path
) -> JobResults:
    """Run the source framework's job first (its logits are the reference; it converts too
    when it is a target, and times its own file for the deployment table), then each other
    target's, and keras's when LiteRT is asked for (it exports the LiteRT files)."""
    results = JobResults(np.empty(0), {}, None, {})
    names = [framework, *(t for t in targets if t != framework)]
    if options.litert and deploy.LITERT_WORKER not in names:
        names.append(deploy.LITERT_WORKER)
    for name in names:
        own = options.deployment and name == framework
        litert_job = options.litert and name == deploy.LITERT_WORKER
        job = ConvertJob.create(
            model_spec=source.model_spec,
            train_spec=source.train_spec,
            out=out / CONVERT_JOBS_DIR / name,
            framework=name,
            dataset=options.dataset or source.dataset,
            data_dir=options.data_dir,
            weights=str(source.weights_file),
            model_file=str(model_file(out, name)) if name in targets or own else None,
            source=name == framework,
            images=options.images,
            deploy_repeats=options.repeats if own else None,
            litert_file=str(out / LITERT_FILE) if litert_job else None,
            litert_int8_file=str(out / LITERT_INT8_FILE)
            if litert_job and options.quantize
            else None,
            calibration=options.calibration if litert_job and options.quantize else 0,
            calibration_seed=options.calibration_seed,
        )
        status = launch(job, threads=thread_setting())
        if status != 0:
            error = read_failure(job.path, status)["error"]
            results.failures[name] = f"{error} (see {job.path / LOG_FILE})"
            if name == framework:
                raise UserError(
                    f"{framework} could not compute the source's logits: {results.failures[name]}",
                    "fix that framework's install, or choose another with --source-framework",
                )
            continue
        with np.load(job.path / CONVERT_RECORD) as npz:
            if name == framework:
                results.reference = np.asarray(npz["source"], np.float64)
                if "deployed" in npz.files:
                    timing = {
                        k.removeprefix(deploy.TIMING): float(npz[k])
                        for k in npz.files
                        if k.startswith(deploy.TIMING)
                    }
                    results.deployed = (npz["deployed"], timing)
            if "converted" in npz.files and name in targets:
                results.converted[name] = npz["converted"]
    return results


def check_options(options: ConvertOptions) -> None:
    """Refuse option values that cannot work, before anything is read or written."""
    if options.images < 1:
        raise UserError(f"--images must be at least 1, got {options.images}", "use --images N >= 1")
    if options.repeats < 1:
        raise UserError(
            f"--repeats must be at least 1, got {options.repeats}", "use --repeats N >= 1"
        )
    if options.quantize and not (options.onnx or options.litert):
        raise UserError(
            f"--quantize {options.quantize} quantizes the deployed formats, and none is asked for",
            f"add --onnx, --litert or both: `--onnx --litert --quantize {options.quantize}`",
        )
    if options.onnx:
        onnx_export.check_available()
    if options.litert:
        litert.check_available()
        registry.check_installed(deploy.LITERT_WORKER)


def run_convert(options: ConvertOptions) -> int:
    """Convert, verify, print the tables, write ``convert.json``; 0 when every file's logits
    are within tolerance (and every int8 file meets its goals), 1 otherwise."""
    check_options(options)
    source = read_source(options.source)
    framework = options.source_framework or source.framework
    registry.check_installed(framework)
    targets, skipped = choose_targets(options.targets)
    dataset = options.dataset or source.dataset
    data = training_data(dataset, source.train_spec, root=options.data_dir)
    x_test = data.x_test
    if options.images > len(x_test):
        raise UserError(
            f"--images {options.images} asks for more than the {len(x_test):,} test images",
            f"use --images {len(x_test)} or less",
        )
    calibration = None  # drawn now: a set larger than the data is refused before any work
    if options.quantize:
        _, calibration = quantization.calibration_images(
            data.x_train, options.calibration, options.calibration_seed
        )
    deploy.check_files(options.check, x_test[:1])
    out = options.out or source.default_out
    check_out_folder(out)
    dtype = source.train_spec.dtype
    print(
        f"convert: {options.source} ({framework}, {dtype}) -> {out}; "
        f"logits of the first {options.images} {dataset} test images"
    )
    results = run_jobs(options, source, framework, targets, out)
    deployed: list[dict[str, Any]] = []
    first: dict[str, np.ndarray] = {}
    if options.deployment:
        print(f"deployment: timing every format on all {len(x_test):,} test images")
        own = (model_file(out, framework), tolerance(dtype, [framework]))
        deployed, first = deploy.deployment_rows(
            options, source, framework, own, results, data, calibration
        )
    reference = results.reference[: options.images]
    rows = []
    for name in targets:
        tol = tolerance(dtype, [framework, name])
        rows.append(row(name, model_file(out, name), results.converted.get(name), reference, tol))
        if name in results.failures:
            rows[-1]["error"] = results.failures[name]
    for name, path in (("onnx", out / ONNX_FILE), ("litert", out / LITERT_FILE)):
        if name in first:
            rows.append(row(name, path, first[name], reference, deploy.FLOAT32_TOLERANCE))
    if options.litert and deploy.LITERT_WORKER in results.failures:
        rows.append(row("litert", out / LITERT_FILE, None, reference, deploy.FLOAT32_TOLERANCE))
        rows[-1]["error"] = results.failures[deploy.LITERT_WORKER]
    print_table(rows, dtype, options.onnx or options.litert, skipped)
    record: dict[str, Any] = {
        "source": str(options.source),
        "framework": framework,
        "dataset": dataset,
        "dtype": dtype,
        "images": options.images,
        "onnx_dtype": onnx_export.RUNTIME_DTYPE if options.onnx else None,
        "rows": rows,
        "skipped": skipped,
    }
    if options.deployment:
        record["deployment"] = {
            "framework": framework,
            "dataset": dataset,
            "test_images": len(x_test),
            "threads": thread_setting(),
            "batch": deploy.BATCH,
            "repeats": options.repeats,
            "calibration": {"images": options.calibration, "seed": options.calibration_seed}
            if options.quantize
            else None,
            "rows": deployed,
        }
        print(deploy.table(record["deployment"]))
    atomic_write_json(out / CONVERT_FILE, record)
    print(f"wrote {out / CONVERT_FILE}")
    ok = all(entry["ok"] for entry in rows) and all(e.get("ok", True) for e in deployed)
    return 0 if ok else 1


def print_table(rows: list[dict[str, Any]], dtype: str, floats: bool, skipped: list[str]) -> None:
    """The table, then what it does not show: skipped frameworks, the deployed dtype, failures."""
    cells = [
        [
            entry["target"],
            entry["file"],
            "-" if entry["max_abs"] is None else f"{entry['max_abs']:.2e}",
            f"{entry['tolerance']:.2g}",
            "ok" if entry["ok"] else ("FAILED" if entry["max_abs"] is None else "OVER"),
        ]
        for entry in rows
    ]
    print(md_table(["target", "file", "max |logit difference|", "tolerance", "ok"], cells))
    for entry in rows:
        if "error" in entry:
            print(f"{entry['target']} failed: {entry['error']}")
    if skipped:
        print(f"skipped (not installed): {', '.join(skipped)}")
    if floats and dtype != onnx_export.RUNTIME_DTYPE:
        print(
            f"the ONNX and LiteRT models are {onnx_export.RUNTIME_DTYPE}: neither runtime has a "
            f"{dtype} Conv on the CPU, so they are held to the float32 tolerance"
        )


DESCRIPTION = (
    "Write a run's weights (or a canonical .safetensors file) in each framework's own format, "
    "read each file back in its framework and compare its logits on the first N test images "
    "with the source's. --onnx and --litert add the deployed formats (--quantize int8 their "
    "int8 models), and a deployment table: each format's size, accuracy on the whole test "
    "set, predictions differing from the source, latency and throughput in its own runtime."
)


def configure(parser: argparse.ArgumentParser) -> None:
    """The options of ``cnn-compare convert``."""
    parser.add_argument(
        "source", type=Path, help="a run folder (OUT/runs/<framework>-seed<S>) or a weight file"
    )
    parser.add_argument(
        "--to",
        default="all",
        help="comma-separated frameworks, or all (every installed one), from: "
        + ", ".join(registry.frameworks()),
    )
    parser.add_argument("--onnx", action="store_true", help="also write and verify model.onnx")
    parser.add_argument(
        "--litert",
        action="store_true",
        help="also write and verify model.tflite (LiteRT, through Keras's export)",
    )
    parser.add_argument(
        "--quantize",
        choices=quantization.FORMATS,
        help="also write each deployed format quantized (post-training, static, calibrated)",
    )
    parser.add_argument(
        "--calibration",
        type=int,
        metavar="N",
        default=quantization.CALIBRATION_IMAGES,
        help="training images that calibrate the int8 scales (default: %(default)s)",
    )
    parser.add_argument(
        "--calibration-seed",
        type=int,
        metavar="SEED",
        default=quantization.CALIBRATION_SEED,
        help="seed that draws the calibration images (default: %(default)s)",
    )
    parser.add_argument(
        "--check",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="a deployed model of this run made elsewhere (.onnx or .tflite), measured beside "
        "the others (repeatable)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        metavar="N",
        default=LATENCY_REPEATS,
        help="single-image calls timed for each format's latency (default: %(default)s)",
    )
    parser.add_argument(
        "--out", type=Path, help="output folder (default: SOURCE/converted, or beside the file)"
    )
    parser.add_argument("--images", type=int, default=1000, help="test images to compare on")
    parser.add_argument(
        "--source-framework",
        help="the framework that computes the source's logits (default: the run's own; "
        "for a weight file, the first registered: numpy)",
    )
    parser.add_argument("--dataset", help="the test images' dataset (default: the run's)")
    parser.add_argument("--data-dir", help="folder holding <dataset>/<idx files>")


def main(args: argparse.Namespace) -> int:
    """``cnn-compare convert``."""
    return run_convert(from_args(ConvertOptions, args, targets=args.to, check=tuple(args.check)))
