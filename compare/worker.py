"""One framework's job (train, parity or bench), in a process of its own by default.

``python -m compare.worker JOB.json`` reads the job, runs it, appends progress events to
``<out>/events.jsonl`` (one JSON object a line) and writes its outputs under ``<out>``. A user
error is written to ``<out>/failed.json`` and exits with status 2; a crash writes its traceback
there and exits 1. The parent (``compare.runner``) reads only these files: nothing a child
prints is parsed, so framework logging cannot break it.
"""

from __future__ import annotations

import io
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cnn_common.data import Data, training_data
from cnn_common.errors import EXIT_USER_ERROR, UserError
from cnn_common.results import RESULT_FILE, WEIGHTS_FILE, RunResult
from cnn_common.spec import ModelSpec, TrainSpec, spec_from_dict, spec_to_dict
from cnn_common.weights import atomic_write_bytes, init_weights, load_weights

EVENTS_FILE = "events.jsonl"
FAILED_FILE = "failed.json"
FEATURES_FILE = "feature_maps.npz"
N_FEATURE_IMAGES = 4  # test images whose feature maps the report shows
N_MISCLASSIFIED = 16  # misclassified test images kept for the report

Event = dict[str, Any]
EventSink = Callable[[Event], None]


def make_job(
    kind: str,
    framework: str,
    model_spec: ModelSpec,
    train_spec: TrainSpec,
    out: Path,
    **fields: Any,
) -> dict[str, Any]:
    """A job for ``main``: its kind, framework, output folder, specs (as plain data) and the
    kind's own fields. ``job_specs`` reads the specs back."""
    specs = spec_to_dict(model_spec, train_spec)
    return {
        "kind": kind,
        "framework": framework,
        "out": str(out),
        "model_spec": specs["model"],
        "train_spec": specs["train"],
        **fields,
    }


def job_specs(job: dict[str, Any]) -> tuple[ModelSpec, TrainSpec]:
    return spec_from_dict({"model": job["model_spec"], "train": job["train_spec"]})


def data_for_job(job: dict[str, Any], train: TrainSpec) -> Data:
    """The dataset the job names, split and scaled as its train spec says."""
    return training_data(
        job["dataset"], train, root=job.get("data_dir"), subset_size=job.get("subset")
    )


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` written atomically (temporary file, then rename)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def run_train_job(job: dict[str, Any], on_event: EventSink | None) -> None:
    """Train one framework; leave run.json, the weights and the feature maps in job['out']."""
    from compare.frameworks import load

    model_spec, train_spec = job_specs(job)
    framework = load(job["framework"])
    data = data_for_job(job, train_spec)
    init = None
    if job["init"] == "shared":
        init = init_weights(model_spec, train_spec.seed, train_spec.dtype)
    out = Path(job["out"])
    framework.train(
        model_spec,
        train_spec,
        data,
        out,
        init_weights=init,
        on_event=on_event,
        resume=bool(job.get("resume")),
        device=job.get("device", "auto"),
        progress=False,
    )
    # Feature maps of the trained model, rebuilt from the canonical weights it wrote.
    weights, _, _ = load_weights(out / WEIGHTS_FILE)
    model = framework.build(model_spec, train_spec.dtype)
    framework.set_weights(model, weights)
    images = data.x_test[:N_FEATURE_IMAGES]
    maps = framework.feature_maps(model, images)
    # Misclassified test images travel with the run, so the report needs no dataset.
    predictions = np.asarray(RunResult.from_json(out / RESULT_FILE).predictions)
    wrong = np.flatnonzero(predictions != data.y_test)[:N_MISCLASSIFIED]
    save_npz(
        out / FEATURES_FILE,
        {
            "images": images,
            **{f"map/{name}": value for name, value in maps.items()},
            "wrong/index": wrong,
            "wrong/images": data.x_test[wrong],
            "wrong/predicted": predictions[wrong],
            "wrong/true": data.y_test[wrong],
        },
    )


def run_job(job: dict[str, Any], on_event: EventSink | None) -> None:
    """Dispatch on ``job['kind']``: train, parity or bench."""
    kind = job["kind"]
    if kind == "train":
        run_train_job(job, on_event)
    elif kind == "parity":
        from compare.parity import run_parity_job

        run_parity_job(job)
    elif kind == "bench":
        from compare.bench import run_bench_job

        run_bench_job(job)
    else:
        raise ValueError(f"unknown job kind {kind!r}")


def write_failure(out: Path, kind: str, error: str, trace: str = "") -> None:
    """Record why a job failed, for the parent and the report."""
    text = json.dumps({"kind": kind, "error": error, "traceback": trace}, indent=1)
    atomic_write_bytes(out / FAILED_FILE, text.encode())


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    job = json.loads(Path(args[0]).read_text())
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    (out / FAILED_FILE).unlink(missing_ok=True)
    with open(out / EVENTS_FILE, "a", buffering=1) as events:

        def on_event(event: Event) -> None:
            events.write(json.dumps(event) + "\n")

        try:
            run_job(job, on_event)
        except UserError as exc:
            write_failure(out, "user", str(exc))
            return EXIT_USER_ERROR
        except Exception as exc:  # noqa: BLE001 - recorded for the report, then exit 1
            write_failure(out, "crash", f"{type(exc).__name__}: {exc}", traceback.format_exc())
            traceback.print_exc()
            return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
