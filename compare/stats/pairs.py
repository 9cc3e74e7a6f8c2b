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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compare.stats.inference import (
    ALPHA,
    CORRECTION,
    INCONCLUSIVE,
    MAX_SEEDS_PLANNED,
    MIN_SEEDS,
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

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, **{m: r.to_dict() for m, r in self.results.items()}}


def runs_by_framework(runs: Iterable[Any]) -> dict[str, dict[int, Any]]:
    """framework -> seed -> run record (``RunResult``), frameworks in the order met."""
    found: dict[str, dict[int, Any]] = {}
    for run in runs:
        found.setdefault(run.framework, {})[int(run.train_spec["seed"])] = run
    return found


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


def judge(
    by_framework: Mapping[str, Mapping[int, Any]], config: Mapping[str, Any] | None
) -> tuple[list[Pair], Margins, float]:
    """The folder's pairs as its configuration asks them judged: its margins, its level."""
    margins, alpha = Margins.from_config(config), level(config)
    return pairwise(by_framework, margins, alpha), margins, alpha


def judge_runs(
    runs: Iterable[Any], config: Mapping[str, Any] | None
) -> tuple[list[Pair], Margins, float] | None:
    """``judge`` on a folder's run records; None below two frameworks or ``MIN_SEEDS`` seeds
    of one (nothing to judge)."""
    by_framework = runs_by_framework(runs)
    if len(by_framework) < 2 or min(len(r) for r in by_framework.values()) < MIN_SEEDS:
        return None
    return judge(by_framework, config)


def pairs_record(runs: Iterable[Any], config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The pairs' verdicts for ``results.json`` (the report's table, every figure of it), or
    None when there is nothing to judge."""
    judged = judge_runs(runs, config)
    if judged is None:
        return None
    pairs, margins, alpha = judged
    return {
        "level": alpha,
        "correction": CORRECTION,
        "margin": margins.to_dict(),
        "pairs": [pair.to_dict() for pair in pairs],
    }


def verdict_text(result: Comparison, margins: Margins, metric: str, margin: bool = True) -> str:
    """``real difference`` (``, within ±M`` when TOST also passed), ``equivalent within ±M``,
    or ``inconclusive`` with the seeds it would take; ``margin=False`` leaves ``±M`` out
    (where it is stated once for every row)."""
    if result.verdict == INCONCLUSIVE:
        if result.seeds_needed is None:
            if not math.isfinite(result.p_value):
                return "inconclusive (too few seeds)"
            return f"inconclusive (over {MAX_SEEDS_PLANNED:,} seeds)"
        return f"inconclusive ({result.seeds_needed} seeds)"
    within = f" within {margins.text(metric)}" if margin else ""
    if result.verdict == "equivalent":
        return f"equivalent{within}"
    return result.verdict + (f",{within or ' within the margin'}" if result.within_margin else "")


def planned_seeds(pairs: list[Pair], done: int, alpha: float | None = None) -> int | None:
    """The seeds every inconclusive result needs at the level it will be judged at: ``alpha``
    when given (the rounds of a run already under way), else run in rounds from ``done``
    seeds, each look at ``look_alpha`` of the rounds' count, which itself grows with the
    seeds (so the count is found by iterating). None when nothing is inconclusive, or when a
    result has no spread to plan from or needs more than ``MAX_SEEDS_PLANNED``."""
    open_ = [r for p in pairs for r in p.results.values() if r.verdict == INCONCLUSIVE]
    if not open_:
        return None
    most = done + 1
    for _ in range(20):
        at = alpha if alpha is not None else look_alpha(len(look_schedule(done, most)))
        needs = [seeds_needed(r.sd, r.margin, r.test == PAIRED, at) for r in open_]
        if None in needs:
            return None
        need = max(max(n for n in needs if n is not None), done + 1)
        if need <= most:
            return most
        most = need
    return most


def resolve_text(out: Path, pairs: list[Pair], done: int, config: Mapping[str, Any]) -> str | None:
    """What would resolve the inconclusive pairs, in a sentence: the seeds they need in rounds
    that keep the level (``--resume --seeds auto:N``, ``planned_seeds``); once a folder's
    planned rounds are spent, a new run on fresh seeds; None when nothing is inconclusive."""
    if not any(p.inconclusive for p in pairs):
        return None
    plan = config.get("sequential")
    most = planned_seeds(pairs, MIN_SEEDS if plan else done)
    if most is None:
        return (
            "Some inconclusive pairs cannot be resolved by seeds alone at this margin (no "
            f"spread to plan from, or more than {MAX_SEEDS_PLANNED:,} seeds): widen --margin, "
            "or read the intervals."
        )
    if plan:
        fresh = int((config.get("train") or {}).get("seed", 0)) + int(plan["max"])
        return (
            f"The {plan['max']} seeds planned did not resolve every pair; a new run on fresh "
            f"seeds would: the same options with `--seed {fresh} --seeds auto:{most}` and a "
            "new --out."
        )
    command = f"cnn-compare run --resume --out {shlex.quote(str(out))} --seeds auto:{most}"
    return (
        "To resolve the inconclusive pairs, run the seeds they need in rounds that keep the "
        f"level: `{command}`."
    )
