"""Cross-evaluation: each framework's trained weights evaluated in every other framework.

The weights are canonical, so a model trained in one framework runs in any other; the same
weights should give the same predictions everywhere. Where they do not, the reason should be
a near-tie: a test image whose two highest logits are so close that kernels rounding
differently (about 1e-6 in float32) pick different classes. Each differing prediction is
listed with its margin, and called a near-tie only when that margin is that small.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from cnn_common.files import atomic_write_json
from cnn_common.metrics import accuracy
from compare.crosseval.job import CrossEvalJob
from compare.engine.launch import launch, read_failure, run_in_process
from compare.engine.layout import (
    CROSSEVAL_DIR,
    CROSSEVAL_FILE,
    CROSSEVAL_RECORD,
    WEIGHTS_FILE,
    run_dir,
)
from compare.engine.pool import WorkerPool
from compare.report.collect import completed

# A differing prediction is a near-tie when the source's own top-two logits are closer than
# this, relative to its largest logit: far above float32 rounding between kernels (~1e-6),
# far below a real change of the model.
NEAR_TIE = 1e-4


def margins(logits: np.ndarray) -> np.ndarray:
    """``(N,)``: the gap between each row's two highest logits, relative to its largest |logit|."""
    top = np.sort(logits, axis=1)[:, -2:]  # (N, 2)
    scale = np.maximum(np.abs(logits).max(axis=1), 1e-30)
    return (top[:, 1] - top[:, 0]) / scale


def summarize(logits: dict[str, dict[str, np.ndarray]], labels: np.ndarray) -> dict[str, Any]:
    """``logits[evaluator][source] (N, K)`` -> accuracy and differing-prediction matrices
    (rows: the framework that trained the weights; columns: the one that ran them) and every
    differing test image with its margin."""
    frameworks = list(logits)
    sources = [s for s in frameworks if all(s in logits[e] for e in frameworks)]
    acc: dict[str, dict[str, float]] = {}
    differ: dict[str, dict[str, int]] = {}
    cases = []
    for source in sources:
        own = logits[source][source]
        own_pred = own.argmax(axis=1)
        own_margin = margins(own)
        acc[source], differ[source] = {}, {}
        for evaluator in frameworks:
            pred = logits[evaluator][source].argmax(axis=1)
            acc[source][evaluator] = accuracy(labels, pred)
            changed = np.flatnonzero(pred != own_pred)
            differ[source][evaluator] = int(len(changed))
            for index in changed:
                margin = float(own_margin[index])
                cases.append(
                    {
                        "weights": source,
                        "evaluated_in": evaluator,
                        "image": int(index),
                        "label": int(labels[index]),
                        "own_prediction": int(own_pred[index]),
                        "prediction": int(pred[index]),
                        "margin": margin,
                        "near_tie": margin < NEAR_TIE,
                    }
                )
    return {
        "frameworks": frameworks,
        "accuracy": acc,
        "differ": differ,
        "cases": cases,
        "near_tie": NEAR_TIE,
        "all_near_ties": all(case["near_tie"] for case in cases),
    }


def run_crosseval(
    out: Path,
    frameworks: list[str],
    seed: int,
    job_fields: dict[str, Any],
    in_process: bool,
    threads: int | None,
    log: Callable[[str], None],
    pool: WorkerPool | None = None,
) -> dict[str, Any] | None:
    """Evaluate the seed-``seed`` weights of every finished framework in each of them (in
    ``pool``'s warm workers when given); write ``crosseval.json``. Returns the summary, or None
    when fewer than two frameworks finished."""
    trained = {
        name: run_dir(out, name, seed) / WEIGHTS_FILE
        for name in frameworks
        if completed(run_dir(out, name, seed))
    }
    if len(trained) < 2:
        return None
    logits: dict[str, dict[str, np.ndarray]] = {}
    labels = None
    jobs = [
        CrossEvalJob(
            out=str(out / CROSSEVAL_DIR / name),
            framework=name,
            weights={source: str(path) for source, path in trained.items()},
            **job_fields,
        )
        for name in trained
    ]
    if in_process:
        statuses = [run_in_process(job) for job in jobs]
    elif pool is not None:  # warm already: each evaluation takes moments, one at a time
        statuses = [pool.run(job) for job in jobs]
    else:
        # Nothing here is timed, and most of a worker's time is its imports: the workers run
        # side by side, one thread each.
        with ThreadPoolExecutor(len(jobs)) as pool:
            statuses = list(pool.map(lambda job: launch(job, threads or 1), jobs))
    for name, job, status in zip(trained, jobs, statuses, strict=True):
        if status != 0:
            log(f"cross-evaluation in {name} failed: {read_failure(job.path, status)['error']}")
            continue
        with np.load(job.path / CROSSEVAL_RECORD) as npz:
            labels = npz["labels"]
            logits[name] = {k.split("/", 1)[1]: npz[k] for k in npz.files if k != "labels"}
    if len(logits) < 2 or labels is None:
        return None
    summary = summarize(logits, labels)
    summary["seed"] = seed
    atomic_write_json(out / CROSSEVAL_FILE, summary)
    return summary
