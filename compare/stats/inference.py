"""Is a difference real? Means with 95% intervals, and pairwise differences with a stated test.

- A framework's mean over seeds: Student's t interval (``scipy.stats.ttest_1samp``).
- A difference between two frameworks (or an ablation arm and its baseline): when both were
  run on the same seeds, the paired t-test on the per-seed differences
  (``scipy.stats.ttest_rel``): the seed fixes the batch order, the split and (with shared
  init) the starting weights, so pairing removes what the two runs had in common. Otherwise
  Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``). The interval is the test's own
  95% confidence interval of the mean difference.
- The verdict: "real difference" when p < 0.05 (the interval excludes 0), else "within
  run-to-run noise". Identical samples have no spread and no p-value: they are reported as a
  difference of exactly 0, within noise. Samples that differ by the same amount on every seed
  have no spread either: the difference is exact, and real.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE
MIN_SEEDS = 3  # fewer seeds give intervals too wide to say anything
REAL = "real difference"
NOISE = "within run-to-run noise"


@dataclass(frozen=True)
class Estimate:
    """A mean over ``n`` seeds and its 95% interval (NaN bounds for a single value)."""

    mean: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class Comparison:
    """``a - b``: the mean difference, its 95% interval, the test, its p-value, the verdict."""

    difference: float
    low: float
    high: float
    p_value: float
    test: str  # "paired t-test" | "Welch's t-test"
    n: int  # pairs (paired) or the smaller sample (Welch)
    verdict: str

    @property
    def real(self) -> bool:
        return self.verdict == REAL


def _scipy_stats():  # noqa: ANN202 - the scipy.stats module
    """``scipy.stats``, imported when a test first runs: every ``cnn-compare`` command line
    imports this module (through the ablation's), and most never test anything."""
    from scipy import stats

    return stats


def _quiet_ttest(test, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
    # Near-identical samples make scipy warn about precision; the result is still right and
    # the exact cases are handled before the test is called.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return test(*args, **kwargs)


def mean_interval(values: list[float] | np.ndarray) -> Estimate:
    """The mean of ``values`` and its 95% Student's t interval."""
    arr = np.asarray(values, dtype=np.float64)
    mean = float(arr.mean()) if arr.size else math.nan
    if arr.size < 2:
        return Estimate(mean, math.nan, math.nan, int(arr.size))
    if np.all(arr == arr[0]):
        return Estimate(mean, mean, mean, int(arr.size))
    interval = _quiet_ttest(_scipy_stats().ttest_1samp, arr, 0.0).confidence_interval(CONFIDENCE)
    return Estimate(mean, float(interval.low), float(interval.high), int(arr.size))


def verdict(p_value: float) -> str:
    return REAL if p_value < ALPHA else NOISE


def compare_samples(a: Mapping[int, float], b: Mapping[int, float]) -> Comparison:
    """Compare two samples keyed by seed: paired where they share at least two seeds and
    every seed of each is in the other, Welch's t-test otherwise."""
    shared = sorted(set(a) & set(b))
    if len(shared) >= 2 and set(a) == set(b):
        diffs = np.array([a[s] - b[s] for s in shared], dtype=np.float64)
        mean = float(diffs.mean())
        if np.all(diffs == diffs[0]):  # no spread: the difference is exact
            return Comparison(
                mean, mean, mean, 1.0 if mean == 0 else 0.0, "paired t-test", len(diffs),
                NOISE if mean == 0 else REAL,
            )  # fmt: skip
        paired = [a[s] for s in shared], [b[s] for s in shared]
        result = _quiet_ttest(_scipy_stats().ttest_rel, *paired)
        interval = result.confidence_interval(CONFIDENCE)
        p = float(result.pvalue)
        return Comparison(
            mean, float(interval.low), float(interval.high), p, "paired t-test", len(diffs),
            verdict(p),
        )  # fmt: skip
    xa, xb = np.asarray(list(a.values()), float), np.asarray(list(b.values()), float)
    mean = float(xa.mean() - xb.mean()) if xa.size and xb.size else math.nan
    if min(xa.size, xb.size) < 2:
        return Comparison(mean, math.nan, math.nan, math.nan, "Welch's t-test", 0, NOISE)
    if np.all(xa == xa[0]) and np.all(xb == xb[0]):
        p = 1.0 if mean == 0 else 0.0
        return Comparison(mean, mean, mean, p, "Welch's t-test", min(xa.size, xb.size), verdict(p))
    result = _quiet_ttest(_scipy_stats().ttest_ind, xa, xb, equal_var=False)
    interval = result.confidence_interval(CONFIDENCE)
    p = float(result.pvalue)
    return Comparison(
        mean, float(interval.low), float(interval.high), p, "Welch's t-test",
        min(xa.size, xb.size), verdict(p),
    )  # fmt: skip
