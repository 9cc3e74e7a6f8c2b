"""``cnn-compare parity``: one set of weights in every framework, the same batches, K steps:
where do the numerics part?

Each framework (in its own process, ``compare.parity_task``) records its layer-by-layer trace
and its updates step by step from the shared initial weights; ``compare.locate`` compares
every pair in the order the computation runs and names the first step, layer and quantity
(forward, backward or update) where each pair departs beyond tolerance. A departure that a
framework's declaration explains (float64 computed in float32) is named with its cause.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnn_common.errors import UserError
from cnn_common.files import atomic_write_json
from cnn_common.spec import ModelSpec, TrainSpec
from compare import registry
from compare.jobs import ParityJob
from compare.launch import run_checked
from compare.layout import PARITY_DIR, PARITY_FILE, PARITY_RECORD
from compare.locate import (
    PHASES,
    TOLERANCES,
    Row,
    compare_records,
    first_departures,
    near_tie_pools,
)
from compare.lock import check_out_folder
from compare.onnx_export import parity_lines, parity_reference
from compare.render import md_table
from compare.report import write_outputs


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
    overwrite: bool = False  # replace a result already in out


def without_dropout(spec: ModelSpec) -> ModelSpec:
    """Dropout masks come from each framework's own RNG: parity compares without them."""
    dense = tuple(dataclasses.replace(d, dropout=0.0) for d in spec.dense)
    return dataclasses.replace(spec, dense=dense)


def known_cause(
    row: Row, dtype: str, recorded: dict[str, dict[str, np.ndarray]], spec: ModelSpec
) -> str:
    """Why a pair departs, when the cause is known: a framework's own declaration (float64
    computed in float32), or a max-pooling near-tie at this step or before (float32
    rounding routing a gradient to another pixel: every later quantity inherits it)."""
    a, b = row.pair.split(" vs ")
    if dtype == "float64":
        causes = [
            f"{name}: {registry.get(name).native['float64']}"
            for name in (a, b)
            if name in registry.frameworks() and not registry.get(name).float64_exact
        ]
        if causes:
            return "; ".join(causes)
    for step in range(row.step + 1):
        pools = near_tie_pools(recorded[a], recorded[b], spec, step, dtype)
        if pools:
            advice = (
                "--dtype float64 separates rounding from real differences"
                if dtype == "float32"
                else "the tied inputs are equal up to rounding, so the weight gradients agree"
            )
            return (
                f"{dtype} rounding: a max-pooling near-tie in {', '.join(pools)} at step "
                f"{step} sent a gradient to another pixel of its window (both are right); " + advice
            )
    return ""


def pair_table(rows: list[Row], causes: dict[str, str]) -> tuple[list[str], list[list[str]]]:
    """Per pair: the worst relative difference of each phase against its tolerance, and the
    first departure with its cause when one is known."""
    head = ["pair", *(f"{phase} (worst / tol)" for phase in PHASES), "first departure"]
    firsts = first_departures(rows)
    table = []
    for pair, first in firsts.items():
        cells = [pair]
        for phase in PHASES:
            mine = [r for r in rows if r.pair == pair and r.phase == phase]
            worst = max(mine, key=lambda r: r.value / r.tolerance, default=None)
            cells.append(f"{worst.value:.2g} / {worst.tolerance:g}" if worst else "-")
        if first is None:
            cells.append("none: agree within tolerance")
        else:
            cause = causes.get(pair, "")
            cells.append(
                f"{first.where()} ({first.value:.3g} > {first.tolerance:g})"
                + (f"; known cause: {cause}" if cause else "")
            )
        table.append(cells)
    return head, table


def summary(rows: list[Row], options: ParityOptions, causes: dict[str, str]) -> dict[str, Any]:
    """The parity record: settings, every row, and each pair's first departure with its known
    cause (JSON-safe)."""
    train = options.train_spec
    firsts = first_departures(rows)
    return {
        "frameworks": list(options.frameworks),
        "dtype": train.dtype,
        "steps": options.steps,
        "batch_size": train.batch_size,
        "optimizer": f"{train.optimizer} ({train.epsilon_convention} epsilon {train.epsilon})",
        "tolerances": TOLERANCES[train.dtype],
        "rows": [row.to_dict() for row in rows],
        "departures": {
            pair: None if row is None else {**row.to_dict(), "cause": causes.get(pair, "")}
            for pair, row in firsts.items()
        },
    }


def run_parity(options: ParityOptions) -> int:
    """Run every framework's parity job, print where each pair parts; 0 when none does."""
    check_out_folder(options.out)
    if (options.out / PARITY_FILE).exists() and not options.overwrite:
        raise UserError(
            f"{options.out} already holds a parity result ({PARITY_FILE})",
            "pass --overwrite to replace it, or choose another --out",
        )
    model_spec = without_dropout(options.model_spec)
    train = options.train_spec
    for name in options.frameworks:
        registry.check_installed(name)
    recorded: dict[str, dict[str, np.ndarray]] = {}
    for name in options.frameworks:
        job = ParityJob.create(
            model_spec=model_spec,
            train_spec=train,
            out=options.out / PARITY_DIR / name,
            framework=name,
            dataset=options.dataset,
            data_dir=options.data_dir,
            steps=options.steps,
        )
        run_checked(job, options.in_process)
        with np.load(job.path / PARITY_RECORD) as npz:
            recorded[name] = {k: npz[k] for k in npz.files}
    rows = compare_records(recorded, model_spec, train.dtype)
    causes = {
        pair: known_cause(row, train.dtype, recorded, model_spec)
        for pair, row in first_departures(rows).items()
        if row is not None
    }
    record = summary(rows, options, causes)
    # onnxruntime, when installed: a forward-only reference none of the frameworks share.
    reference = parity_reference(recorded, model_spec, train, options.dataset, options.data_dir)
    if reference is not None:
        record["onnx"] = reference
    print(
        f"parity: {', '.join(options.frameworks)}, {train.dtype}, {options.steps} step(s) from "
        f"shared weights, batch {train.batch_size}, {record['optimizer']}"
    )
    print(md_table(*pair_table(rows, causes)))
    for line in parity_lines(reference):
        print(line)
    atomic_write_json(options.out / PARITY_FILE, record)
    for line in write_outputs(options.out)[-1:]:
        print(f"wrote {options.out / PARITY_FILE}; {line}")
    unexplained = [p for p, row in record["departures"].items() if row and not row["cause"]]
    if unexplained:
        print(f"unexplained departures: {', '.join(unexplained)}")
    return 1 if unexplained else 0
