"""The results folder of ``cnn-compare``: every file name, in one place.

::

    OUT/.lock                         held while a command writes here (``engine.lock``)
    OUT/config.json                   what was asked (``--resume`` reads it back)
    OUT/wall.json                     each session's wall time (a resumed run adds one)
    OUT/runs/<framework>-seed<S>/     one training run: the trainer's out_dir (run.json,
                                      weights.safetensors, checkpoints/) plus the worker's
                                      job.json, events.jsonl, log.txt, feature_maps.npz, and
                                      failed.json when it failed
    OUT/results.json                  every run record, the summary and the differences
    OUT/history.csv                   one row per framework, seed and epoch
    OUT/report.md, OUT/report.html    the report (the HTML embeds its figures)
    OUT/figures/*.png                 the figures (``*_FIGURE`` below)
    OUT/parity.json                   ``cnn-compare parity`` (when run into this folder)
    OUT/parity/<framework>/           a parity worker's job.json, log.txt and parity.npz
    OUT/bench.json                    ``cnn-compare bench`` (when run into this folder)
    OUT/bench-jobs/<variant>-<turn>/  one bench process's job.json, log.txt and record
    OUT/ablation/config.json          ``cnn-compare ablate``: what was asked
    OUT/ablation/runs/<framework>/<arm>-seed<S>/   one training run of an arm
    OUT/ablation/batches/<framework>-<N>t/         a worker's events and log (N threads)
    OUT/ablation.json                 the ablation's effects
    OUT/crosseval/<framework>/        every run's trained weights evaluated in <framework>
    OUT/crosseval.json                the cross-evaluation matrices
    OUT/workers/<framework>.log       a warm worker's output outside its jobs (``engine.pool``)
    OUT/rosetta.json, rosetta.html    ``cnn-compare rosetta``: each framework's source for
                                      each layer kind (the report shows it when present)
    OUT/rosetta/<framework>/          a rosetta worker's job.json, log.txt and sources.json

``cnn-compare convert`` writes into its own folder (``compare.convert``; by default
``converted/`` inside the run folder it converts)::

    CONVERTED/<framework><suffix>     the weights in each framework's own file
    CONVERTED/model.onnx              the ONNX model (model.int8.onnx: quantized)
    CONVERTED/model.tflite            the LiteRT model (model.int8.tflite: quantized)
    CONVERTED/convert.json            every file's max |logit difference| from the source, and
                                      the deployment table (size, accuracy, speed)
    CONVERTED/jobs/<framework>/       a worker's job.json, log.txt and logits.npz
"""

from __future__ import annotations

from pathlib import Path

from cnn_common.results import RESULT_FILE, WEIGHTS_FILE

LOCK_FILE = ".lock"
CONFIG_FILE = "config.json"
WALL_FILE = "wall.json"
RUNS_DIR = "runs"
RESULTS_FILE = "results.json"
HISTORY_FILE = "history.csv"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
FIGURES_DIR = "figures"
PARITY_FILE = "parity.json"
BENCH_FILE = "bench.json"
BENCH_JOBS_DIR = "bench-jobs"  # one folder per timed process
ABLATION_DIR = "ablation"
ABLATION_FILE = "ablation.json"
BATCHES_DIR = "batches"  # inside ABLATION_DIR: one folder per worker process
CROSSEVAL_DIR = "crosseval"
CROSSEVAL_FILE = "crosseval.json"
CROSSEVAL_RECORD = "logits.npz"
ROSETTA_DIR = "rosetta"
WORKERS_DIR = "workers"  # warm workers' logs
ROSETTA_FILE = "rosetta.json"
ROSETTA_HTML = "rosetta.html"
CONVERTED_DIR = "converted"  # convert's default folder inside a run folder
CONVERT_FILE = "convert.json"
CONVERT_JOBS_DIR = "jobs"
CONVERT_RECORD = "logits.npz"
ONNX_FILE = "model.onnx"
ONNX_INT8_FILE = "model.int8.onnx"
LITERT_FILE = "model.tflite"
LITERT_INT8_FILE = "model.int8.tflite"

# The figures, in FIGURES_DIR: the runs', then each feature's.
CURVES_FIGURE = "curves.png"
STEP_LOSS_FIGURE = "step_loss.png"
CONFUSION_FIGURE = "confusion.png"
CLASS_F1_FIGURE = "class_f1.png"
FEATURE_MAPS_FIGURE = "feature_maps.png"
FILTERS_FIGURE = "filters.png"
MISCLASSIFIED_FIGURE = "misclassified.png"
ABLATION_FIGURE = "ablation.png"
CUMULATIVE_FIGURE = "ablation-cumulative.png"  # the cumulative mode's waterfall
PARITY_FIGURE = "parity.png"
CROSSEVAL_FIGURE = "crosseval.png"
BENCH_PHASES_FIGURE = "bench_phases.png"

# Inside a job's folder (a run, or one framework's parity or bench job):
JOB_FILE = "job.json"
EVENTS_FILE = "events.jsonl"
LOG_FILE = "log.txt"
FAILED_FILE = "failed.json"
FEATURES_FILE = "feature_maps.npz"
PARITY_DIR = "parity"
PARITY_RECORD = "parity.npz"
BENCH_RECORD = "bench.json"
ROSETTA_RECORD = "sources.json"

__all__ = [
    "ABLATION_DIR",
    "ABLATION_FIGURE",
    "CUMULATIVE_FIGURE",
    "ABLATION_FILE",
    "BATCHES_DIR",
    "BENCH_FILE",
    "BENCH_JOBS_DIR",
    "BENCH_PHASES_FIGURE",
    "BENCH_RECORD",
    "CLASS_F1_FIGURE",
    "CONFIG_FILE",
    "CONFUSION_FIGURE",
    "CONVERTED_DIR",
    "CONVERT_FILE",
    "CONVERT_JOBS_DIR",
    "CONVERT_RECORD",
    "CROSSEVAL_DIR",
    "CROSSEVAL_FIGURE",
    "CROSSEVAL_FILE",
    "CROSSEVAL_RECORD",
    "CURVES_FIGURE",
    "EVENTS_FILE",
    "FAILED_FILE",
    "FEATURES_FILE",
    "FEATURE_MAPS_FIGURE",
    "FIGURES_DIR",
    "FILTERS_FIGURE",
    "HISTORY_FILE",
    "JOB_FILE",
    "LITERT_FILE",
    "LITERT_INT8_FILE",
    "LOCK_FILE",
    "LOG_FILE",
    "MISCLASSIFIED_FIGURE",
    "ONNX_FILE",
    "ONNX_INT8_FILE",
    "PARITY_DIR",
    "PARITY_FIGURE",
    "PARITY_FILE",
    "PARITY_RECORD",
    "REPORT_HTML",
    "REPORT_MD",
    "RESULTS_FILE",
    "RESULT_FILE",
    "ROSETTA_DIR",
    "ROSETTA_FILE",
    "ROSETTA_HTML",
    "ROSETTA_RECORD",
    "RUNS_DIR",
    "STEP_LOSS_FIGURE",
    "WALL_FILE",
    "WEIGHTS_FILE",
    "WORKERS_DIR",
    "parse_run_dir",
    "run_dir",
    "worker_log",
]


def run_dir(out: Path, framework: str, seed: int) -> Path:
    """The folder of one training run: ``OUT/runs/<framework>-seed<S>``."""
    return Path(out) / RUNS_DIR / f"{framework}-seed{seed}"


def parse_run_dir(path: Path) -> tuple[str, int] | None:
    """``(framework, seed)`` of a run folder's name, or None when it is not one."""
    framework, sep, seed = Path(path).name.rpartition("-seed")
    if not sep or not framework or not seed.isdigit():
        return None
    return framework, int(seed)


def worker_log(out: Path, framework: str) -> Path:
    """A warm worker's output before and between its jobs: ``OUT/workers/<framework>.log``."""
    return Path(out) / WORKERS_DIR / f"{framework}.log"
