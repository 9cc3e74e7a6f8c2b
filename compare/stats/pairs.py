"""Every pair of frameworks on both metrics, as one family: the comparisons the report's
table, its forest plot, the terminal summary and ``--seeds auto`` all read.

With six frameworks that is 15 pairs on two metrics, 30 tests: their p-values are corrected
together (``inference.adjust``), at the level of one look (``inference.look_alpha`` when the
folder ran its seeds in rounds).
"""

from __future__ import annotations

import itertools
import math
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compare.stats.inference import (
    ALPHA,
    INCONCLUSIVE,
    MAX_SEEDS_PLANNED,
    PAIRED,
    Comparison,
    adjust,
    compare_samples,
    look_alpha,
    look_schedule,
    seeds_needed,
)
from compare.stats.margins import Margins

METRICS = {"accuracy": "test_accuracy", "loss": "test_loss"}


@dataclass(frozen=True)
class Pair:
    """``a - b`` on each metric (``METRICS``' names)."""

    a: str
    b: str
    results: dict[str, Comparison]

    @property
    def name(self) -> str:
        return f"{self.a} − {self.b}"

    @property
    def inconclusive(self) -> bool:
        return any(r.verdict == INCONCLUSIVE for r in self.results.values())

    @property
    def seeds_needed(self) -> int | None:
        """The most seeds either metric needs (None: resolved, or beyond planning)."""
        needs = [r.seeds_needed for r in self.results.values() if r.verdict == INCONCLUSIVE]
        return None if not needs or None in needs else max(n for n in needs if n is not None)


def level(config: Mapping[str, Any] | None) -> float:
    """Each verdict's level: 5%, split over the looks of a folder that ran in rounds."""
    sequential = (config or {}).get("sequential") or {}
    return look_alpha(int(sequential.get("looks", 1)))


def pairwise(
    by_framework: Mapping[str, Mapping[int, Any]], margins: Margins, alpha: float = ALPHA
) -> list[Pair]:
    """Every pair of frameworks (in the given order) on test accuracy and test loss, run
    records keyed by seed; the family's p-values adjusted together."""
    names = list(by_framework)
    raw: list[tuple[str, str, str, Comparison]] = []
    for a, b in itertools.combinations(names, 2):
        for metric, field in METRICS.items():
            result = compare_samples(
                {s: float(getattr(r, field)) for s, r in by_framework[a].items()},
                {s: float(getattr(r, field)) for s, r in by_framework[b].items()},
                margins.of(metric),
                alpha,
            )
            raw.append((a, b, metric, result))
    fixed = adjust([r for *_, r in raw])
    pairs: dict[tuple[str, str], dict[str, Comparison]] = {}
    for (a, b, metric, _), result in zip(raw, fixed, strict=True):
        pairs.setdefault((a, b), {})[metric] = result
    return [Pair(a, b, results) for (a, b), results in pairs.items()]


def verdict_text(result: Comparison, margins: Margins, metric: str) -> str:
    """``real difference`` (``, within ±M`` when TOST also passed), ``equivalent within ±M``,
    or ``inconclusive`` with the seeds it would take."""
    if result.verdict == INCONCLUSIVE:
        if result.seeds_needed is None:
            if not math.isfinite(result.p_value):
                return "inconclusive (too few seeds)"
            return f"inconclusive (over {MAX_SEEDS_PLANNED:,} seeds)"
        return f"inconclusive ({result.seeds_needed} seeds)"
    if result.verdict == "equivalent":
        return f"equivalent within {margins.text(metric)}"
    return result.verdict + (f", within {margins.text(metric)}" if result.within_margin else "")


def planned_seeds(pairs: list[Pair], done: int) -> int | None:
    """The seeds every inconclusive result needs at the level it will be judged at: run in
    rounds from ``done`` seeds, each look at ``look_alpha`` of the rounds' count, which
    itself grows with the seeds (so the count is found by iterating). None when nothing is
    inconclusive, or when a result has no spread to plan from or needs more than
    ``MAX_SEEDS_PLANNED``."""
    open_ = [r for p in pairs for r in p.results.values() if r.verdict == INCONCLUSIVE]
    if not open_:
        return None
    most = done + 1
    for _ in range(20):
        alpha = look_alpha(len(look_schedule(done, most)))
        needs = [seeds_needed(r.sd, r.margin, r.test == PAIRED, alpha) for r in open_]
        if None in needs:
            return None
        need = max(max(n for n in needs if n is not None), done + 1)
        if need <= most:
            return most
        most = need
    return most


def resolve_command(out: Path, pairs: list[Pair], done: int) -> str | None:
    """The command that runs the seeds the inconclusive pairs need, in rounds that keep the
    level (``--seeds auto:N``, ``planned_seeds``); None when nothing is inconclusive or no
    count would do."""
    most = planned_seeds(pairs, done)
    if most is None:
        return None
    return f"cnn-compare run --resume --out {shlex.quote(str(out))} --seeds auto:{most}"
