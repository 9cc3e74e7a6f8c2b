"""``cnn-compare parity``: one set of weights in every framework, the same batches, K steps:
where do the numerics part?

Each framework (in its own process, ``compare.parity.task``) records its layer-by-layer trace
and its updates step by step from the shared initial weights; ``compare.parity.locate`` compares
every pair in the order the computation runs and names the first step, layer and quantity
(forward, backward or update) where each pair departs beyond tolerance. A departure that a
framework's declaration explains (float64 computed in float32) is named with its cause.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnn_common.cli import specs_from_args
from cnn_common.errors import UserError
from cnn_common.files import atomic_write_json
from cnn_common.schedule import describe
from cnn_common.spec import ModelSpec
from compare.convert.onnx_export import parity_lines, parity_reference
from compare.engine import registry
from compare.engine.launch import run_checked
from compare.engine.layout import PARITY_DIR, PARITY_FILE, PARITY_RECORD
from compare.engine.lock import check_out_folder
from compare.engine.options import (
    Options,
    add_arguments,
    at_least,
    folder_arguments,
    from_args,
    option_fields,
)
from compare.parity.job import ParityJob
from compare.parity.locate import (
    STAGES,
    TOLERANCES,
    Row,
    compare_records,
    first_departures,
    near_tie_pools,
)
from compare.report.outputs import write_outputs
from compare.report.render import md_table


@dataclass(frozen=True, kw_only=True)
class ParityOptions(Options):
    """Everything ``cnn-compare parity`` was asked to do."""

    steps: int = 3
    out: Path = Path("runs/parity")
    in_process: bool = False


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
    """Per pair: the worst relative difference of each stage against its tolerance, and the
    first departure with its cause when one is known."""
    head = ["pair", *(f"{stage} (worst / tol)" for stage in STAGES), "first departure"]
    firsts = first_departures(rows)
    table = []
    for pair, first in firsts.items():
        cells = [pair]
        for stage in STAGES:
            mine = [r for r in rows if r.pair == pair and r.phase == stage]
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
        "optimizer": "; ".join(
            part
            for part in (
                f"{train.optimizer} ({train.epsilon_convention} epsilon {train.epsilon})",
                describe(train),
            )
            if part
        ),
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
        job = options.job(
            ParityJob,
            name,
            options.out / PARITY_DIR / name,
            model_spec=model_spec,
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


DESCRIPTION = (
    "Load the same weights into every framework, take K optimiser steps on the same batches "
    "and compare logits, losses, gradients and updates."
)


def configure(parser: argparse.ArgumentParser) -> None:
    """The options of ``cnn-compare parity``."""
    add_arguments(parser)
    parser.add_argument("--steps", type=int, default=3, help="optimiser steps to compare")
    folder_arguments(
        parser, Path("runs/parity"), "output folder", "replace a parity result already in --out"
    )
    parser.add_argument(
        "--in-process", action="store_true", help="run every framework in this process"
    )


def main(args: argparse.Namespace) -> int:
    """``cnn-compare parity``: 0 when every pair agrees or departs for a known cause."""
    names = registry.parse_frameworks(args.frameworks)
    model, train = specs_from_args(args)
    at_least("--steps", args.steps)
    return run_parity(from_args(ParityOptions, args, **option_fields(args, names, model, train)))
