"""``cnn-compare convert``: trained weights in every framework's own file and in ONNX, each
verified by reading it back.

The source is a run folder of ``cnn-compare run`` (``run.json`` names the framework that
trained it) or a canonical ``.safetensors`` weight file. Its weights are canonical, so each
target framework (in a worker process of its own, ``compare.convert.task``) builds its model,
sets them, writes its own file (``<framework><suffix>``: ``.npz``, ``.keras``, ``.pt``,
``.ckpt``), reads the file back and computes the logits of the first N test images. The
source's own logits come from the source framework; the ONNX model
(``compare.convert.onnx_export``) runs in onnxruntime here. A file is verified when its logits
are within the tolerance of the source's: 1e-5 in float32 (kernels round differently), 1e-10
in float64 when both frameworks compute float64 throughout (``FrameworkInfo.float64_exact``).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnn_common.data import training_data
from cnn_common.errors import UserError
from cnn_common.files import atomic_write_json
from cnn_common.results import RunResult
from cnn_common.spec import ModelSpec, TrainSpec
from cnn_common.weights import Weights, load_weights
from compare.convert import onnx_export
from compare.convert.job import ConvertJob
from compare.engine import registry
from compare.engine.launch import launch, read_failure
from compare.engine.layout import (
    CONVERT_FILE,
    CONVERT_JOBS_DIR,
    CONVERT_RECORD,
    CONVERTED_DIR,
    LOG_FILE,
    ONNX_FILE,
    RESULT_FILE,
    WEIGHTS_FILE,
)
from compare.engine.lock import check_out_folder
from compare.engine.options import from_args
from compare.report.render import md_table

FLOAT32_TOLERANCE = 1e-5  # max |logit difference|: float32 kernels round differently
FLOAT64_TOLERANCE = 1e-10  # only the order of summation differs
SOURCE_HINT = (
    "give a run folder of `cnn-compare run` (OUT/runs/<framework>-seed<S>/, holding run.json "
    "and weights.safetensors) or a canonical .safetensors weight file"
)


@dataclass(frozen=True)
class ConvertOptions:
    """Everything ``cnn-compare convert`` was asked to do."""

    source: Path
    targets: str = "all"  # comma-separated frameworks, or all (every installed one)
    onnx: bool = False
    out: Path | None = None  # default: SOURCE/converted, or <stem>-converted beside a file
    images: int = 1000
    source_framework: str | None = None  # default: the run's own; numpy's for a weight file
    dataset: str | None = None  # default: the run's dataset; mnist for a weight file
    data_dir: str | None = None


@dataclass(frozen=True)
class Source:
    """The weights to convert and who computes their reference logits."""

    weights_file: Path
    weights: Weights
    model_spec: ModelSpec
    train_spec: TrainSpec  # its dtype is the weights' own
    framework: str
    dataset: str
    default_out: Path


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
    return FLOAT64_TOLERANCE if exact else FLOAT32_TOLERANCE


def model_file(out: Path, name: str) -> Path:
    """``OUT/<framework><suffix>``: the framework's own file."""
    return out / f"{name}{registry.get(name).model_suffix}"


def row(
    target: str, file: Path, logits: np.ndarray | None, reference: np.ndarray, tol: float
) -> dict[str, Any]:
    """One line of the table and of ``convert.json``; ``logits`` None: the target failed."""
    entry: dict[str, Any] = {"target": target, "file": str(file), "tolerance": tol}
    if logits is None:
        return {**entry, "max_abs": None, "ok": False}
    diff = float(np.max(np.abs(np.asarray(logits, np.float64) - reference), initial=0.0))
    return {**entry, "max_abs": diff, "ok": diff <= tol}


def run_jobs(
    options: ConvertOptions, source: Source, framework: str, targets: list[str], out: Path
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, str]]:
    """Run the source framework's job first (its logits are the reference; it converts too
    when it is a target), then each other target's: ``(reference (N, K), converted logits by
    target, failure by target)``."""
    converted: dict[str, np.ndarray] = {}
    failures: dict[str, str] = {}
    reference = None
    for name in [framework, *(t for t in targets if t != framework)]:
        job = ConvertJob.create(
            model_spec=source.model_spec,
            train_spec=source.train_spec,
            out=out / CONVERT_JOBS_DIR / name,
            framework=name,
            dataset=options.dataset or source.dataset,
            data_dir=options.data_dir,
            weights=str(source.weights_file),
            model_file=str(model_file(out, name)) if name in targets else None,
            source=name == framework,
            images=options.images,
        )
        status = launch(job)
        if status != 0:
            error = read_failure(job.path, status)["error"]
            failures[name] = f"{error} (see {job.path / LOG_FILE})"
            if name == framework:
                raise UserError(
                    f"{framework} could not compute the source's logits: {failures[name]}",
                    "fix that framework's install, or choose another with --source-framework",
                )
            continue
        with np.load(job.path / CONVERT_RECORD) as npz:
            if name == framework:
                reference = np.asarray(npz["source"], np.float64)
            if "converted" in npz.files:
                converted[name] = npz["converted"]
    assert reference is not None  # the source framework's job ran first and succeeded
    return reference, converted, failures


def run_convert(options: ConvertOptions) -> int:
    """Convert, verify, print the table, write ``convert.json``; 0 when every file's logits
    are within tolerance, 1 otherwise."""
    if options.images < 1:
        raise UserError(f"--images must be at least 1, got {options.images}", "use --images N >= 1")
    source = read_source(options.source)
    framework = options.source_framework or source.framework
    registry.check_installed(framework)
    targets, skipped = choose_targets(options.targets)
    if options.onnx:
        onnx_export.check_available()
    dataset = options.dataset or source.dataset
    x_test = training_data(dataset, source.train_spec, root=options.data_dir).x_test
    if options.images > len(x_test):
        raise UserError(
            f"--images {options.images} asks for more than the {len(x_test):,} test images",
            f"use --images {len(x_test)} or less",
        )
    out = options.out or source.default_out
    check_out_folder(out)
    dtype = source.train_spec.dtype
    print(
        f"convert: {options.source} ({framework}, {dtype}) -> {out}; "
        f"logits of the first {options.images} {dataset} test images"
    )
    reference, converted, failures = run_jobs(options, source, framework, targets, out)
    rows = []
    for name in targets:
        tol = tolerance(dtype, [framework, name])
        rows.append(row(name, model_file(out, name), converted.get(name), reference, tol))
        if name in failures:
            rows[-1]["error"] = failures[name]
    if options.onnx:
        path = out / ONNX_FILE
        onnx_export.save_onnx(onnx_export.onnx_model(source.model_spec, source.weights), path)
        logits = onnx_export.run_onnx(path, x_test[: options.images])
        rows.append(row("onnx", path, logits, reference, FLOAT32_TOLERANCE))
    print_table(rows, dtype, options.onnx, skipped)
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
    atomic_write_json(out / CONVERT_FILE, record)
    print(f"wrote {out / CONVERT_FILE}")
    return 0 if all(entry["ok"] for entry in rows) else 1


def print_table(rows: list[dict[str, Any]], dtype: str, onnx: bool, skipped: list[str]) -> None:
    """The table, then what it does not show: skipped frameworks, the ONNX dtype, failures."""
    cells = [
        [
            entry["target"],
            entry["file"],
            "-" if entry["max_abs"] is None else f"{entry['max_abs']:.2e}",
            f"{entry['tolerance']:g}",
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
    if onnx and dtype != onnx_export.RUNTIME_DTYPE:
        print(
            f"model.onnx is {onnx_export.RUNTIME_DTYPE}: onnxruntime has no {dtype} Conv on the "
            "CPU, so it is held to the float32 tolerance"
        )


DESCRIPTION = (
    "Write a run's weights (or a canonical .safetensors file) in each framework's own format "
    "(and ONNX with --onnx), read each file back in its framework and compare its logits on "
    "the first N test images with the source's."
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
    return run_convert(from_args(ConvertOptions, args, targets=args.to))
