"""``cnn-compare parity``: one set of weights in every framework, the same batches, K steps.

Each framework (in its own process, ``compare.parity_task``) loads ``init_weights(spec, seed)``
and records, for each of the first K batches of the shared batch order, the logits, the loss
and the gradients at those shared weights — a like-for-like comparison of forward and backward.
It then records its own weights after ``k = 1..K`` optimiser steps, which compares the
optimisers (and the drift that rounding adds step by step).

Metrics: logits and loss by ``max |a - b|``; gradients by ``max |a - b| / max |b|`` (per
tensor); weights by the relative difference of the update, ``||(a - w0) - (b - w0)|| /
||b - w0||``, so that one entry whose float32 gradient took the other side of a max-pooling
near-tie (it happens: the frameworks' kernels round differently) does not hide, or fake, a
difference of the optimisers. The parent names the first batch or step, and the tensor, where
a pair departs beyond tolerance.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnn_common.files import atomic_write_json
from cnn_common.spec import ModelSpec, TrainSpec
from cnn_common.weights import weight_names
from compare import registry
from compare.jobs import ParityJob
from compare.launch import run_checked
from compare.layout import PARITY_FILE, PARITY_RECORD
from compare.render import md_table

# dtype -> quantity -> (metric, tolerance). float32: the kernels of each framework round
# differently; float64 leaves only the order of summation.
TOLERANCES: dict[str, dict[str, tuple[str, float]]] = {
    "float32": {
        "logits": ("abs", 1e-5),
        "loss": ("abs", 1e-5),
        "grad": ("rel", 1e-4),
        # Updates drift apart step by step as rounding differs; 1e-3 after a few steps, while
        # a wrong epsilon convention or bias correction shows at 1e-4..1 from step 1.
        "weights": ("update", 1e-3),
    },
    "float64": {
        "logits": ("abs", 1e-10),
        "loss": ("abs", 1e-10),
        "grad": ("rel", 1e-10),
        "weights": ("update", 1e-9),
    },
}


@dataclass(frozen=True)
class ParityOptions:
    frameworks: tuple[str, ...]
    model_spec: ModelSpec
    train_spec: TrainSpec
    dataset: str = "mnist"
    data_dir: str | None = None
    steps: int = 3
    out: Path = Path("runs/parity")
    in_process: bool = False


def without_dropout(spec: ModelSpec) -> ModelSpec:
    """Dropout masks come from each framework's own RNG: parity compares without them."""
    dense = tuple(dataclasses.replace(d, dropout=0.0) for d in spec.dense)
    return dataclasses.replace(spec, dense=dense)


def compare_arrays(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """``(max |a - b|, max |a - b| / max |b|, ||a - b|| / ||b||)`` in float64."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if not a64.size:
        return 0.0, 0.0, 0.0
    diff = float(np.max(np.abs(a64 - b64)))
    scale = float(np.max(np.abs(b64)))
    norm_diff, norm = float(np.linalg.norm(a64 - b64)), float(np.linalg.norm(b64))
    return diff, diff / scale if scale > 0 else diff, norm_diff / norm if norm > 0 else norm_diff


def _quantity(key: str) -> tuple[int, str, str]:
    """``step2/grad/conv1.kernel`` -> (2, "grad", "conv1.kernel")."""
    parts = key.split("/")
    step = int(parts[0][4:])
    return step, parts[1], parts[2] if len(parts) > 2 else parts[1]


def compare_frameworks(
    recorded: dict[str, dict[str, np.ndarray]], names: list[str], dtype: str
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Every pair, step and tensor: rows of differences, and the first row past tolerance."""
    tolerances = TOLERANCES[dtype]
    kind_order = {"logits": 0, "loss": 1, "grad": 2, "weights": 3}
    rows: list[dict[str, Any]] = []
    for a, b in itertools.combinations(recorded, 2):
        keys = sorted(
            recorded[a],
            key=lambda k: (
                _quantity(k)[0],
                kind_order[_quantity(k)[1]],
                _layer_pos(_quantity(k)[2], names),
            ),
        )
        for key in keys:
            step, kind, tensor = _quantity(key)
            abs_diff, rel_diff, norm_rel = compare_arrays(recorded[a][key], recorded[b][key])
            metric, tol = tolerances[kind]
            value = {"abs": abs_diff, "rel": rel_diff, "update": norm_rel}[metric]
            rows.append(
                {
                    "pair": f"{a} vs {b}",
                    "step": step,
                    "quantity": kind,
                    "tensor": tensor,
                    "max_abs": abs_diff,
                    "max_rel": rel_diff,
                    "norm_rel": norm_rel,
                    "metric": metric,
                    "value": value,
                    "tolerance": tol,
                    "ok": value <= tol,
                }
            )
    failing = [r for r in rows if not r["ok"]]
    first = (
        min(
            failing,
            key=lambda r: (r["step"], kind_order[r["quantity"]], _layer_pos(r["tensor"], names)),
        )
        if failing
        else None
    )
    return rows, first


def _layer_pos(tensor: str, names: list[str]) -> int:
    return names.index(tensor) if tensor in names else -1


QUANTITY_LABELS = {
    "logits": "logits (shared weights)",
    "loss": "loss (shared weights)",
    "grad": "gradients (shared weights)",
    "weights": "update after k steps",
}


def describe(row: dict[str, Any]) -> str:
    """Where a row stands: 'batch 2, grad of conv1.kernel' or 'after step 3, weights of ...'."""
    if row["quantity"] == "weights":
        return f"after step {row['step']}, update of {row['tensor']}"
    what = row["tensor"] if row["quantity"] == "grad" else ""
    return f"batch {row['step']}, {row['quantity']}" + (f" of {what}" if what else "")


def summary_table(rows: list[dict[str, Any]]) -> list[list[str]]:
    """Per pair and quantity: the row closest to (or furthest past) its tolerance."""
    worst: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["pair"], row["quantity"])
        if key not in worst or row["value"] / row["tolerance"] > (
            worst[key]["value"] / worst[key]["tolerance"]
        ):
            worst[key] = row
    return [
        [
            pair,
            QUANTITY_LABELS[kind],
            f"{row['max_abs']:.3g}",
            f"{row['max_rel']:.3g}",
            f"{row['value']:.3g}",
            f"{row['metric']} <= {row['tolerance']:g}",
            "ok" if row["ok"] else f"DEPARTS ({describe(row)})",
        ]
        for (pair, kind), row in worst.items()
    ]


def run_parity(options: ParityOptions) -> int:
    """Run every framework's parity job, print the table; 0 within tolerance, else 1."""
    model_spec = without_dropout(options.model_spec)
    train = options.train_spec
    recorded: dict[str, dict[str, np.ndarray]] = {}
    for name in options.frameworks:
        registry.check_installed(name)
        job = ParityJob.create(
            model_spec=model_spec,
            train_spec=train,
            out=options.out / name,
            framework=name,
            dataset=options.dataset,
            data_dir=options.data_dir,
            steps=options.steps,
        )
        run_checked(job, options.in_process)
        with np.load(job.path / PARITY_RECORD) as npz:
            recorded[name] = {k: npz[k] for k in npz.files}
    names = weight_names(model_spec)
    rows, first = compare_frameworks(recorded, names, train.dtype)
    head = ["pair", "quantity", "max abs diff", "max rel diff", "measured", "tolerance", "verdict"]
    table = summary_table(rows)
    print(
        f"parity: {', '.join(options.frameworks)}, {train.dtype}, {options.steps} step(s), "
        f"batch {train.batch_size}, {train.optimizer} ({train.epsilon_convention} epsilon)"
    )
    print(md_table(head, table))
    if first is None:
        verdict = "all pairs agree within tolerance"
    else:
        verdict = (
            f"first departure: {first['pair']} at {describe(first)}: "
            f"{first['metric']} {first['value']:.3g} > {first['tolerance']:g} "
            f"(max abs {first['max_abs']:.3g})"
        )
    print(verdict)
    report = {
        "dtype": train.dtype,
        "steps": options.steps,
        "frameworks": list(recorded),
        "rows": rows,
        "first_departure": first,
        "verdict": verdict,
    }
    atomic_write_json(options.out / PARITY_FILE, report)
    print(f"wrote {options.out / PARITY_FILE}")
    return 0 if first is None else 1
