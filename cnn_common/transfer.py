"""Transfer learning: a new spec's starting weights with the layers of a trained run in them.

``transfer_weights(spec, train_spec, run)`` starts from the new spec's shared initial weights
(``init_weights`` of its seed and dtype) and takes from ``run`` (a run folder holding
``weights.safetensors``, or such a file) every layer whose name and tensors' shapes match,
batchnorm's running statistics included, cast to the new dtype. The rules, each refused with
a ``UserError`` naming every offending layer:

- a layer is taken whole or not at all: a layer of both specs must keep the same tensors with
  the same shapes (a mismatch is named layer by layer);
- the classifier, ``logits`` (its size follows the dataset's classes), always starts fresh: a
  transfer carries the features, not the old task's answers;
- at least one layer must come from the run;
- a frozen layer (``trainable: false``) must come from the run: fresh random weights that
  never train are a mistake.

The result is a ``TransferWeights``: the weights, with the ``TransferPlan`` that says which
layers were loaded, which start fresh, which of the run's were left out, and where they came
from; the trainers record it (``init: transfer``, ``init_from``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnn_common.errors import UserError
from cnn_common.graph import Layer
from cnn_common.results import RESULT_FILE, WEIGHTS_FILE, RunResult
from cnn_common.spec import ModelSpec, TrainSpec, layers
from cnn_common.weights import Weights, init_weights, load_weights

FLAG = "--init-from"
CLASSIFIER = "logits"  # the layer every spec ends with (cnn_common.graph.logits_layer)
SHOWN = 8  # names listed in a line before "and N more"


@dataclass(frozen=True)
class TransferPlan:
    """Where each layer of a transfer's starting weights came from (layer names, in order)."""

    source: str  # the weight file the loaded layers came from (an absolute path)
    about: str  # the run it belongs to ("pytorch on mnist"), "" when no record is beside it
    loaded: tuple[str, ...]  # taken from the run
    fresh: tuple[str, ...]  # the new spec's shared initial weights
    dropped: tuple[str, ...]  # the run's layers left out
    frozen: tuple[str, ...]  # loaded layers the new spec freezes

    def describe(self) -> str:
        """One line: the source and how many layers were loaded, start fresh, are frozen."""
        about = f" ({self.about})" if self.about else ""
        line = (
            f"starting weights from {self.source}{about}: {len(self.loaded)} layers loaded, "
            f"{len(self.fresh)} fresh ({listed(self.fresh)}), {len(self.frozen)} frozen"
        )
        return line + (f"; left out of the run: {listed(self.dropped)}" if self.dropped else "")


class TransferWeights(dict[str, np.ndarray]):
    """Canonical starting weights (``name -> array``) that carry their ``TransferPlan``: a
    trainer given them records ``init: transfer`` and the source."""

    def __init__(self, weights: Weights, plan: TransferPlan) -> None:
        super().__init__(weights)
        self.plan = plan


def listed(names: tuple[str, ...] | list[str]) -> str:
    """``a, b, c`` (the first ``SHOWN``, then how many more); ``none`` for no name."""
    if not names:
        return "none"
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def weights_file(run: str | Path) -> Path:
    """The weight file of ``run`` (a run folder or the file itself), absolute; a path that
    holds none raises ``UserError`` saying what to give."""
    path = Path(run).expanduser().resolve()
    give = (
        f"give {FLAG} a finished run's folder (one holding {WEIGHTS_FILE}, such as "
        f"runs/compare/runs/pytorch-seed0) or its {WEIGHTS_FILE}"
    )
    if path.is_file():
        return path
    if not path.exists():
        raise UserError(f"{FLAG} {run}: no such run folder or weight file", give)
    if (path / WEIGHTS_FILE).is_file():
        return path / WEIGHTS_FILE
    inside = sorted({*path.glob(f"*/{WEIGHTS_FILE}"), *path.glob(f"*/*/{WEIGHTS_FILE}")})
    if inside:  # a results folder of cnn-compare, or a folder of runs
        runs = [str(found.parent) for found in inside]
        raise UserError(
            f"{FLAG} {run} holds {len(runs)} runs, not one: {listed(runs)}",
            f"give {FLAG} one of them",
        )
    raise UserError(
        f"{FLAG} {run} holds no {WEIGHTS_FILE} (a run that has not finished?)",
        f"{give}; an unfinished run finishes with --resume",
    )


def _about(weights: Path) -> str:
    """``framework on dataset`` from the run record beside ``weights``, if it has a readable
    one (the record only describes the source: the weights file carries the spec)."""
    try:
        record = RunResult.from_json(weights.parent / RESULT_FILE)
    except (UserError, OSError):
        return ""
    return f"{record.framework} on {record.dataset}"


def _with_tensors(spec: ModelSpec) -> dict[str, Layer]:
    """The layers of ``spec`` that keep tensors, by name, in order."""
    return {layer.name: layer for layer in layers(spec) if layer.tensors}


def _mismatches(ours: Layer, theirs: Layer) -> list[str]:
    """How a same-named layer of the run differs from this spec's: one line per tensor."""
    lines = []
    for name in [*ours.tensors, *(t for t in theirs.tensors if t not in ours.tensors)]:
        if name not in theirs.tensors:
            lines.append(f"{name}: this spec has it, the run's {ours.name} has not")
        elif name not in ours.tensors:
            lines.append(f"{name}: the run has it, this spec's {ours.name} has not")
        elif ours.tensors[name] != theirs.tensors[name]:
            shapes = f"the run's {theirs.tensors[name]}, this spec's {ours.tensors[name]}"
            lines.append(f"{name}: {shapes}")
    return lines


def plan_transfer(
    spec: ModelSpec, run_spec: ModelSpec, source: str, about: str = "", given: str = ""
) -> TransferPlan:
    """Which layers of ``spec`` come from a run of ``run_spec`` (its weights in ``source``,
    ``given`` as the user named it); raises ``UserError`` when a same-named layer differs,
    when none matches, or when a frozen layer would start fresh."""
    ours, theirs = _with_tensors(spec), _with_tensors(run_spec)
    common = [name for name in ours if name in theirs and name != CLASSIFIER]
    where = f"{FLAG} {given or source}"
    wrong = [line for name in common for line in _mismatches(ours[name], theirs[name])]
    if wrong:
        raise UserError(
            f"{where}: layers of this spec differ from the run's layers of the same name:\n    "
            + "\n    ".join(wrong),
            "rename a layer that changes (it then starts fresh), or give a run of a spec "
            "whose layers of these names have these shapes",
        )
    if not common:
        raise UserError(
            f"{where}: no layer of this spec is in the run ({CLASSIFIER} always starts "
            f"fresh); the run has {listed([n for n in theirs if n != CLASSIFIER])}, this spec "
            f"{listed([n for n in ours if n != CLASSIFIER])}",
            "give a run of a spec that shares layers (names and shapes) with this one",
        )
    frozen_fresh = [n for n, layer in ours.items() if not layer.trainable and n not in common]
    if frozen_fresh:
        raise UserError(
            f"{where}: frozen layers (trainable: false) get no weights from the run and "
            f"would keep random ones: {listed(frozen_fresh)}",
            "give a run that has these layers, or drop trainable: false from them",
        )
    return TransferPlan(
        source=source,
        about=about,
        loaded=tuple(common),
        fresh=tuple(name for name in ours if name not in common),
        dropped=tuple(name for name in theirs if name not in common),
        frozen=tuple(name for name in common if not ours[name].trainable),
    )


def transfer_weights(spec: ModelSpec, train_spec: TrainSpec, run: str | Path) -> TransferWeights:
    """The starting weights of ``spec`` with the matching layers of ``run`` (a run folder or
    its weight file): the shared initial weights of ``train_spec``'s seed, every tensor of a
    loaded layer replaced by the run's, in ``train_spec.dtype``. Raises ``UserError`` (a
    missing or unreadable run, a layer that differs, nothing to load, a frozen layer left
    fresh) before anything is written."""
    path = weights_file(run)
    try:
        theirs, run_spec, _ = load_weights(path)
    except UserError as exc:  # unreadable, or weights that do not fit their own spec
        raise UserError(f"{FLAG} {run}: {exc.message}", exc.hint) from None
    plan = plan_transfer(spec, run_spec, str(path), _about(path), str(run))
    weights = init_weights(spec, train_spec.seed, train_spec.dtype)
    ours = _with_tensors(spec)
    for name in plan.loaded:
        for tensor in ours[name].tensors:
            weights[tensor] = np.asarray(theirs[tensor], dtype=train_spec.dtype).copy()
    return TransferWeights(weights, plan)
