"""``--seeds N|auto:MAX``: how many seeds a run trains, and with ``auto:MAX`` in which rounds.

A run in rounds (``compare.stats.inference.look_schedule``: 3, 5, 8, 12, ... seeds, MAX last)
looks at every pair's verdict after each round, at the 5% level split over the looks planned
(``look_alpha``), and stops as soon as no pair is inconclusive. The plan is saved with the
folder (``config.json``'s ``sequential``) and cannot change once looked at; a folder of fixed
seeds given ``--resume --seeds auto:MAX`` continues in rounds, its seeds so far the first.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from cnn_common.errors import UserError
from compare.engine.options import PROG
from compare.report.collect import collect
from compare.stats.inference import MIN_SEEDS, look_alpha
from compare.stats.margins import Margins
from compare.stats.pairs import pairwise, planned_seeds, runs_by_framework


class Seeds(NamedTuple):
    """``--seeds``: ``count`` seeds, or rounds up to ``count`` (``auto:MAX``)."""

    count: int
    auto: bool = False


def seeds_argument(text: str) -> Seeds:
    """``"5"`` -> Seeds(5); ``"auto:20"`` -> Seeds(20, auto=True)."""
    name, sep, most = text.strip().partition(":")
    if sep and name == "auto":
        if not most.isdigit() or int(most) < MIN_SEEDS:
            raise argparse.ArgumentTypeError(
                f"auto:MAX needs MAX of at least {MIN_SEEDS} (the first round), got {text!r}"
            )
        return Seeds(int(most), auto=True)
    try:
        return Seeds(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of seeds or auto:MAX, got {text!r}"
        ) from None


def seed_plan(args: argparse.Namespace, saved: dict[str, Any]) -> tuple[int, int]:
    """(seeds, first round's seeds; 0: one round) from ``--seeds`` and, with --resume, the
    folder's own: a folder of fixed seeds given ``--seeds auto:MAX`` continues in rounds,
    its seeds so far the first; one already in rounds keeps its plan."""
    asked: Seeds = args.seeds
    if not saved:
        return asked.count, (MIN_SEEDS if asked.auto else 0)
    had, plan = int(saved.get("seeds", 1)), saved.get("sequential")
    if plan:
        if asked.auto and asked.count != plan["max"]:
            raise UserError(
                f"{args.out} already runs its seeds in rounds up to {plan['max']}: changing "
                "the plan after looking at the verdicts would spoil their level",
                f"run `{PROG} run --resume --out {args.out}` without --seeds",
            )
        return int(plan["max"]), int(plan["first"])
    if not asked.auto:
        return had, 0
    if asked.count <= had:
        raise UserError(
            f"{args.out} already has {had} seeds; auto:{asked.count} would add none",
            f"give --seeds auto:MAX with MAX above {had}",
        )
    return asked.count, max(had, MIN_SEEDS)


def next_round(
    out: Path, rounds: list[int], margins: Margins, count: int, log: Callable[[str], None]
) -> int | None:
    """After a round of ``count`` seeds of the run in ``out`` planned in ``rounds``: the
    verdicts at this look's level; the seeds the next round runs to (the first planned count
    that covers what the inconclusive pairs need), or None when no pair is inconclusive."""
    alpha = look_alpha(len(rounds))
    by_framework = runs_by_framework(collect(out).runs)
    if len(by_framework) < 2:
        return None
    pairs = pairwise(by_framework, margins, alpha)
    open_ = [p.name for p in pairs if p.inconclusive]
    look = f"look after {count} seeds (level {alpha:.3g}, {len(rounds)} looks planned)"
    if not open_:
        log(f"{look}: every pair resolved")
        return None
    need = planned_seeds(pairs, count, alpha) or rounds[-1]
    following = next(c for c in rounds if c >= min(rounds[-1], max(count + 1, need)))
    log(f"{look}: inconclusive {', '.join(open_)}; next round up to {following} seeds")
    return following
