"""The cumulative mode of an ablation: two frameworks as their users write them, then one topic
aligned at a time, and the gap between them at every stage.

Stage 0 runs every topic of the factors with each framework's own convention; stage ``k``
has the first ``k`` aligned (the spec's); the last stage is the baseline. At each stage the
**gap** is ``a - b`` (the first framework against the second) on each metric, paired by seed,
with its 95% interval and verdict (``compare.stats.inference.compare_samples``; equivalence
against the ablation's margins). Each **step** is what aligning one topic closed: the gap
before it minus the gap after it, per seed, tested the same way; the steps' tests form one
family (Benjamini-Hochberg), so that a step is a real difference only when it survives the
correction. The gaps and steps add up: the first gap is the last plus every step.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from compare.ablate.arms import STAGE, Arm, stage_topics
from compare.ablate.effects import effect_json, outcomes
from compare.stats.inference import Comparison, adjust, compare_samples
from compare.stats.margins import Margins
from compare.stats.pairs import METRICS


def _gap_per_seed(a: dict[int, float], b: dict[int, float]) -> dict[int, float]:
    return {seed: a[seed] - b[seed] for seed in sorted(set(a) & set(b))}


def _compare(x: dict[int, float], y: dict[int, float], margin: float) -> Comparison:
    common = sorted(set(x) & set(y))
    x, y = {s: x[s] for s in common}, {s: y[s] for s in common}
    return compare_samples(x, y, margin)


def summarize_cumulative(
    folder: Path,
    stages: list[Arm],
    factors: tuple[str, ...],
    seeds: list[int],
    margins: Margins | None = None,
) -> dict[str, Any]:
    """The gap at every stage and what each step closed (JSON-safe), for the two frameworks
    of ``stages`` (``compare.ablate.arms.plan_stages``)."""
    margins = margins or Margins()
    frameworks = list(dict.fromkeys(arm.framework for arm in stages))
    if len(frameworks) != 2:
        raise ValueError(f"the cumulative mode compares two frameworks, got {frameworks}")
    topics = stage_topics(factors)
    by = {(arm.framework, arm.factor): arm for arm in stages}
    # stage -> metric -> seed -> a - b
    gaps: list[dict[str, dict[int, float]]] = []
    rows: list[dict[str, Any]] = []
    for k in range(len(topics) + 1):
        arms = [by[(name, f"{STAGE}{k}")] for name in frameworks]
        found = [outcomes(folder, arm.framework, arm.source, seeds) for arm in arms]
        gap = {metric: _gap_per_seed(found[0][metric], found[1][metric]) for metric in METRICS}
        gaps.append(gap)
        row: dict[str, Any] = {
            "stage": k,
            "aligned": list(topics[:k]),
            "native": list(topics[k:]),
            "runs": {arm.framework: arm.source for arm in arms},
        }
        for metric in METRICS:
            result = _compare(found[0][metric], found[1][metric], margins.of(metric))
            row[metric] = {**effect_json(result), "verdict": _verdict(result)}
        rows.append(row)
    steps: list[dict[str, Any]] = []
    family: list[tuple[dict[str, Any], str, Comparison]] = []
    for k, topic in enumerate(topics):
        step: dict[str, Any] = {"topic": topic}
        for metric in METRICS:
            # what aligning ``topic`` closed: the gap before it minus the gap after it
            result = _compare(gaps[k][metric], gaps[k + 1][metric], margins.of(metric))
            family.append((step, metric, result))
        steps.append(step)
    for (step, metric, _), result in zip(family, adjust([r for *_, r in family]), strict=True):
        step[metric] = {**effect_json(result), "verdict": _verdict(result)}
    return {
        "frameworks": frameworks,
        "topics": list(topics),
        "seeds": seeds,
        "stages": rows,
        "steps": steps,
        "rule": "gap: the first framework minus the second, paired by seed; step: the gap "
        "before aligning the topic minus the gap after it, paired by seed, the steps' tests "
        "corrected as one family (Benjamini-Hochberg); each with its 95% interval and verdict",
    }


def _verdict(result: Comparison) -> str:
    if not math.isfinite(result.p_value) and result.n < 2:
        return "too few seeds"
    if result.seeds_needed:
        return f"{result.verdict} ({result.seeds_needed} seeds)"
    return result.verdict


def cumulative_lines(summary: dict[str, Any]) -> list[str]:
    """The cumulative table as text lines: the gap at each stage, then each step."""
    a, b = summary["frameworks"]
    lines = [f"cumulative: the gap {a} - {b}, aligning one topic at a time"]
    lines.append(f"  {'stage':<30} {'accuracy gap (points)':<30} {'loss gap':<28} verdict")
    for row in summary["stages"]:
        title = "all native" if not row["aligned"] else f"{row['aligned'][-1]} aligned"
        if row["aligned"] and not row["native"]:
            title = "all aligned (baseline)"
        lines.append(f"  {row['stage']:<2} {title:<27} " + _cells(row))
    lines.append(f"  {'step (gap closed)':<30}")
    for step in summary["steps"]:
        lines.append(f"     {step['topic']:<27} " + _cells(step))
    return lines


def _cells(row: dict[str, Any]) -> str:
    acc, loss = row["accuracy"], row["loss"]
    return (
        f"{100 * acc['difference']:+.3f} [{100 * acc['low']:+.3f}, {100 * acc['high']:+.3f}]"
        f"{'':<6}{loss['difference']:+.4f} [{loss['low']:+.4f}, {loss['high']:+.4f}]  "
        f"{acc['verdict']} / {loss['verdict']}"
    )
