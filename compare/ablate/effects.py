"""The effects of an ablation: each arm against the baseline, seed by seed, with its interval.

For each framework, factor and metric (test accuracy, test loss) the effect is the mean of
``arm - baseline`` over the seeds, with the paired t-test's 95% interval and p-value
(``compare.stats.inference``). The two noise floors (``threads``, ``ulp``) change no default at all;
how far they move a run is how far a run moves by chance. Their noise band is the largest
bound of their intervals, ``max |low|, |high|``. A factor's effect is a **real difference**
when its paired test is significant (p < 0.05) *and* its mean lies beyond that band;
otherwise it is **within noise**.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from cnn_common.results import RunResult
from compare.ablate.arms import BASELINE, NOISE_FLOORS, Arm
from compare.engine.layout import RESULT_FILE, RUNS_DIR
from compare.stats.inference import compare_samples

METRICS = {"accuracy": "test_accuracy", "loss": "test_loss"}
REAL = "real difference"
WITHIN = "within noise"


def _outcomes(folder: Path, framework: str, factor: str, seeds: list[int]) -> dict[str, dict]:
    """metric -> {seed: value} of the finished runs of one arm."""
    found: dict[str, dict[int, float]] = {metric: {} for metric in METRICS}
    for seed in seeds:
        path = folder / RUNS_DIR / framework / f"{factor}-seed{seed}" / RESULT_FILE
        if path.is_file():
            run = RunResult.from_json(path)
            for metric, field in METRICS.items():
                found[metric][seed] = float(getattr(run, field))
    return found


def _effect(arm: dict[int, float], base: dict[int, float]) -> dict[str, Any]:
    common = sorted(set(arm) & set(base))
    if len(common) < 2:
        return {"difference": math.nan, "low": math.nan, "high": math.nan, "p_value": math.nan,
                "test": "", "n": len(common)}  # fmt: skip
    result = compare_samples({s: arm[s] for s in common}, {s: base[s] for s in common})
    return {
        "difference": result.difference,
        "low": result.low,
        "high": result.high,
        "p_value": result.p_value,
        "test": result.test,
        "n": result.n,
    }


def summarize(folder: Path, arms: list[Arm], seeds: list[int]) -> dict[str, Any]:
    """Every arm's effect on each metric, the noise bands and the verdicts (JSON-safe)."""
    baselines = {
        arm.framework: _outcomes(folder, arm.framework, BASELINE, seeds)
        for arm in arms
        if arm.factor == BASELINE
    }
    rows: list[dict[str, Any]] = []
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
            outcome = _outcomes(folder, arm.framework, arm.factor, seeds)
            base = baselines[arm.framework]
            for metric in METRICS:
                row[metric] = _effect(outcome[metric], base[metric])
        rows.append(row)
    bands = noise_bands(rows)
    for row in rows:
        row["noise_band"] = bands.get(row["framework"], {})
        row["verdicts"] = _verdicts(row, bands.get(row["framework"], {}))
        row["verdict"] = _overall(row)
    return {
        "seeds": seeds,
        "rule": "real difference: paired t-test p < 0.05 and |mean effect| beyond the noise "
        "band (the largest interval bound of the threads and ulp noise floors)",
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
        elif effect["p_value"] < 0.05 and abs(effect["difference"]) > band.get(metric, 0.0):
            verdicts[metric] = REAL
        else:
            verdicts[metric] = WITHIN
    return verdicts


def _overall(row: dict[str, Any]) -> str:
    """One word for the row: real when either metric is, else what the metrics agree on."""
    if not row["runs"]:
        return "not run"
    values = list(row["verdicts"].values())
    if REAL in values:
        which = [metric for metric, verdict in row["verdicts"].items() if verdict == REAL]
        return f"{REAL} ({' and '.join(which)})"
    return values[0] if len(set(values)) == 1 else ", ".join(values)
