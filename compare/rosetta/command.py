"""``cnn-compare rosetta``: the same layer in every framework, side by side, from the code.

For each layer kind of the spec (convolution, activation, max-pooling, flatten, dense, dropout
when there is one, the loss and the optimiser's step), every framework's implementation: the
objects its package lists in ``<package>.rosetta.SOURCES``, read with ``inspect.getsource``
in a worker process of that framework (``compare.rosetta.task``), so the page shows the code
that is installed and cannot go stale. Writes ``rosetta.json`` (kind -> framework ->
``[{"object", "file", "line", "source"}]``) and ``rosetta.html`` (self-contained, one column
per framework); a results folder holding ``rosetta.json`` gets a report section from it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cnn_common.cli import specs_from_args
from cnn_common.files import atomic_write_bytes, atomic_write_json
from cnn_common.schedule import scheduled
from cnn_common.spec import ModelSpec, TrainSpec, layers
from compare.engine import registry
from compare.engine.launch import run_checked
from compare.engine.layout import (
    REPORT_HTML,
    ROSETTA_DIR,
    ROSETTA_FILE,
    ROSETTA_HTML,
    ROSETTA_RECORD,
)
from compare.rosetta.job import RosettaJob
from compare.rosetta.page import KINDS, Sources, page

DESCRIPTION = (
    "For each layer kind of the spec (convolution, activation, pooling, flatten, dense, the "
    "loss, the optimiser step), read every framework's own source with inspect.getsource, "
    "each in its own process; write rosetta.json and rosetta.html into --out."
)


def kinds_of(model_spec: ModelSpec, train_spec: TrainSpec) -> list[str]:
    """The kinds the spec's network and optimiser use (weight decay and the schedule where the
    spec has them), in ``KINDS`` order."""
    unrolled = layers(model_spec)
    used = {layer.kind for layer in unrolled} | {"loss", train_spec.optimizer}
    if train_spec.weight_decay:
        used.add("weight_decay")
    if scheduled(train_spec):
        used.add("lr_schedule")
    if any(layer.activation == "relu" for layer in unrolled):
        used.add("activation")
    if any(layer.groups > 1 for layer in unrolled):
        used.add("grouped_conv")
    if "logits" in used:
        used.add("dense")
    return [kind for kind in KINDS if kind in used]


def default_frameworks() -> list[str]:
    """The first registered framework of each package: every implementation once (the Keras
    backends share keras_cnn's layers, which call each backend's own kernels)."""
    first: dict[str, str] = {}
    for name, info in registry.frameworks().items():
        first.setdefault(info.package, name)
    return list(first.values())


def collect_sources(
    frameworks: list[str],
    model_spec: ModelSpec,
    train_spec: TrainSpec,
    out: Path,
    in_process: bool = False,
) -> Sources:
    """Run each framework's rosetta job (in its own process unless ``in_process``); kind ->
    framework -> its entries."""
    for name in frameworks:
        registry.check_installed(name)
    kinds = kinds_of(model_spec, train_spec)
    found: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for name in frameworks:
        job = RosettaJob.create(
            model_spec=model_spec,
            train_spec=train_spec,
            out=Path(out) / ROSETTA_DIR / name,
            framework=name,
            kinds=kinds,
        )
        run_checked(job, in_process)
        found[name] = json.loads((job.path / ROSETTA_RECORD).read_text())
    return {kind: {name: found[name][kind] for name in frameworks} for kind in kinds}


def run_rosetta(
    frameworks: list[str],
    model_spec: ModelSpec,
    train_spec: TrainSpec,
    out: Path,
    in_process: bool = False,
) -> int:
    """Write ``rosetta.json`` and ``rosetta.html`` into ``out`` and say where (a report of
    ``out`` shows them once rendered again); 1 when some object's source could not be read."""
    out = Path(out)
    sources = collect_sources(frameworks, model_spec, train_spec, out, in_process)
    atomic_write_json(out / ROSETTA_FILE, sources)
    atomic_write_bytes(out / ROSETTA_HTML, page(sources).encode())
    print(
        f"rosetta: {len(sources)} layer kinds x {len(frameworks)} frameworks "
        f"({', '.join(frameworks)})"
    )
    print(f"wrote {out / ROSETTA_FILE} and {out / ROSETTA_HTML}")
    if (out / REPORT_HTML).is_file():
        print(f"to show it in the report: cnn-compare report {out}")
    unread = [
        f"{kind}/{name}: {entry['object']} ({entry.get('error', '')})"
        for kind, by_framework in sources.items()
        for name, entries in by_framework.items()
        for entry in entries
        if not entry["source"]
    ]
    for line in unread:
        print(f"no source for {line}")
    return 1 if unread else 0


def configure(parser: argparse.ArgumentParser) -> None:
    """The options of ``cnn-compare rosetta``."""
    parser.add_argument(
        "--frameworks",
        help="comma-separated frameworks (default: the first registered of each package), "
        f"from: {', '.join(registry.frameworks())}",
    )
    parser.add_argument("--spec", type=Path, help="YAML/JSON spec file: its layer kinds")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one spec field (repeatable)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("runs/rosetta"), help="output folder")
    parser.add_argument(
        "--in-process", action="store_true", help="read every framework in this process"
    )


def main(args: argparse.Namespace) -> int:
    """``cnn-compare rosetta``."""
    names = registry.parse_frameworks(args.frameworks or ",".join(default_frameworks()))
    return run_rosetta(names, *specs_from_args(args), args.out, args.in_process)
