"""The effects of an ablation: each arm against the baseline, seed by seed, with its interval.

For each framework, factor and metric (test accuracy, test loss) the effect is the mean of
``arm - baseline`` over the seeds, with the paired t-test's 95% interval and p-value
(``compare.stats.inference``). The two noise floors (``threads``, ``ulp``) change no default at all;
how far they move a run is how far a run moves by chance. Their noise band is the largest
bound of their intervals, ``max |low|, |high|``.

The factors' tests (every framework's, both metrics) form one family, corrected by
Benjamini-Hochberg (``inference.adjust``). A factor's effect is a **real difference** when its
adjusted paired test rejects no effect *and* its mean lies beyond the noise band;
**equivalent** when TOST shows it within the margin (``compare.stats.margins``); otherwise
**inconclusive**, with the seeds that would settle it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from cnn_common.results import RunResult
from compare.ablate.arms import BASELINE, NOISE_FLOORS, Arm
from compare.engine.layout import RESULT_FILE, RUNS_DIR
from compare.stats.inference import (
    ALPHA,
    CORRECTION,
    EQUIVALENT,
    INCONCLUSIVE,
    REAL,
    Comparison,
    adjust,
    compare_samples,
)
from compare.stats.margins import Margins
from compare.stats.pairs import METRICS


def outcomes(folder: Path, framework: str, factor: str, seeds: list[int]) -> dict[str, dict]:
    """metric -> {seed: value} of the finished runs of one arm (``factor``: its folder)."""
    found: dict[str, dict[int, float]] = {metric: {} for metric in METRICS}
    for seed in seeds:
        path = folder / RUNS_DIR / framework / f"{factor}-seed{seed}" / RESULT_FILE
        if path.is_file():
            run = RunResult.from_json(path)
            for metric, field in METRICS.items():
                found[metric][seed] = float(getattr(run, field))
    return found


def _comparison(arm: dict[int, float], base: dict[int, float], margin: float) -> Comparison:
    common = sorted(set(arm) & set(base))
    if len(common) < 2:  # nothing to compare yet
        nan = math.nan
        return Comparison(nan, nan, nan, nan, "", len(common), INCONCLUSIVE, margin)
    return compare_samples({s: arm[s] for s in common}, {s: base[s] for s in common}, margin)


def effect_json(result: Comparison) -> dict[str, Any]:
    """A comparison as the JSON the ablation keeps."""
    return {
        "difference": result.difference,
        "low": result.low,
        "high": result.high,
        "p_value": result.p_value,
        "p_adjusted": result.p_adjusted,
        "p_equivalence": result.p_equivalence,
        "p_equivalence_adjusted": result.p_equivalence_adjusted,
        "within_margin": result.within_margin,
        "seeds_needed": result.seeds_needed,
        "test": result.test if result.n >= 2 else "",
        "n": result.n,
    }


def summarize(
    folder: Path, arms: list[Arm], seeds: list[int], margins: Margins | None = None
) -> dict[str, Any]:
    """Every arm's effect on each metric, the noise bands and the verdicts (JSON-safe)."""
    margins = margins or Margins()
    baselines = {
        arm.framework: outcomes(folder, arm.framework, BASELINE, seeds)
        for arm in arms
        if arm.factor == BASELINE
    }
    rows: list[dict[str, Any]] = []
    family: list[tuple[dict[str, Any], str, Comparison]] = []  # the factors' tests
    for arm in arms:
        if arm.factor == BASELINE:
            continue
        row: dict[str, Any] = {
            "framework": arm.framework,
            "factor": arm.factor,
            "runs": arm.runs,
            "why": arm.why,
        }
        if arm.runs:
            outcome = outcomes(folder, arm.framework, arm.source, seeds)
            base = baselines[arm.framework]
            for metric in METRICS:
                result = _comparison(outcome[metric], base[metric], margins.of(metric))
                row[metric] = effect_json(result)
                if arm.factor not in NOISE_FLOORS:
                    family.append((row, metric, result))
        rows.append(row)
    for (row, metric, _), result in zip(family, adjust([r for *_, r in family]), strict=True):
        row[metric] = effect_json(result)
    bands = noise_bands(rows)
    for row in rows:
        row["noise_band"] = bands.get(row["framework"], {})
        row["verdicts"] = _verdicts(row, bands.get(row["framework"], {}))
        row["verdict"] = row_verdict(row)
    return {
        "seeds": seeds,
        "margin": margins.to_dict(),
        "rule": f"real difference: paired t-test p < {ALPHA:g} after the {CORRECTION} "
        "correction over every factor's tests, and |mean effect| beyond the noise band (the "
        "largest interval bound of the threads and ulp noise floors); equivalent: TOST shows "
        f"the effect within {margins.text('accuracy')} of accuracy and "
        f"{margins.text('loss')} of loss; inconclusive: neither (with the seeds it would take)",
        "effects": rows,
    }


def noise_bands(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """framework -> metric -> the largest interval bound of its noise-floor arms."""
    bands: dict[str, dict[str, float]] = {}
    for row in rows:
        if row["factor"] not in NOISE_FLOORS or not row["runs"]:
            continue
        for metric in METRICS:
            bounds = [abs(row[metric]["low"]), abs(row[metric]["high"])]
            bounds = [b for b in bounds if math.isfinite(b)]
            if bounds:
                band = bands.setdefault(row["framework"], {})
                band[metric] = max(band.get(metric, 0.0), *bounds)
    return bands


def _verdicts(row: dict[str, Any], band: dict[str, float]) -> dict[str, str]:
    if not row["runs"]:
        return {}
    verdicts = {}
    for metric in METRICS:
        effect = row[metric]
        if not math.isfinite(effect["p_value"]):
            verdicts[metric] = "too few seeds"
        elif row["factor"] in NOISE_FLOORS:
            verdicts[metric] = "noise floor"
        elif effect["p_adjusted"] < ALPHA and abs(effect["difference"]) > band.get(metric, 0.0):
            verdicts[metric] = REAL
        elif effect["within_margin"]:
            verdicts[metric] = EQUIVALENT
        elif effect["seeds_needed"]:
            verdicts[metric] = f"{INCONCLUSIVE} ({effect['seeds_needed']} seeds)"
        else:
            verdicts[metric] = INCONCLUSIVE
    return verdicts


def row_verdict(row: dict[str, Any]) -> str:
    """One phrase for the row: real first when either metric is (and what the other metric
    says), else what the metrics agree on, else each metric's verdict."""
    if not row["runs"]:
        return "not run"
    verdicts = row["verdicts"]
    values = list(verdicts.values())
    if REAL in values:
        which = [metric for metric, verdict in verdicts.items() if verdict == REAL]
        rest = [f"; {metric}: {verdict}" for metric, verdict in verdicts.items() if verdict != REAL]
        return f"{REAL} ({' and '.join(which)})" + "".join(rest)
    if len(set(values)) == 1:
        return values[0]
    return "; ".join(f"{metric}: {verdict}" for metric, verdict in verdicts.items())
