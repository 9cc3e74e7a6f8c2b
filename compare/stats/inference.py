"""Is a difference real, absent, or not yet known? Means with 95% intervals, and pairwise
differences with stated tests and one of three verdicts.

- A framework's mean over seeds: Student's t interval (``scipy.stats.ttest_1samp``).
- A difference between two frameworks (or an ablation arm and its baseline): when both were
  run on the same seeds, the paired t-test on the per-seed differences
  (``scipy.stats.ttest_rel``): the seed fixes the batch order, the split and (with shared
  init) the starting weights, so pairing removes what the two runs had in common. Otherwise
  Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``). The interval is the test's own
  95% confidence interval of the mean difference.
- Equivalence against a margin ``M`` (in the metric's own unit): two one-sided tests (TOST,
  Schuirmann 1987), the same t-test against ``-M`` (is the difference above it?) and ``+M``
  (below it?); their larger p-value is the equivalence test's. ``p < alpha`` there is the same
  as the ``1 - 2 alpha`` (90%) interval lying inside ``(-M, +M)``.
- The verdict, at the level ``alpha`` (5%, or less where a family or repeated looks share it):
  **real difference** when the t-test rejects "no difference"; else **equivalent** (within
  ``±M``) when TOST rejects "a difference of M or more"; else **inconclusive**, with the seeds
  it would take (``seeds_needed``). A real difference may also lie within the margin: it is
  reported as real, and ``within_margin`` says so.
- Many pairs at once (15 for six frameworks, on two metrics): ``adjust`` controls the false
  discovery rate over the family with Benjamini-Hochberg (``scipy.stats.
  false_discovery_control``), on the difference tests and, as a family of their own, on the
  equivalence tests; the verdicts then read the adjusted p-values.
- Exact cases: identical samples have no spread: a difference of exactly 0, equivalent within
  any margin. Samples that differ by the same amount on every seed have no spread either: the
  difference is exact, and real.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
CONFIDENCE = 0.95  # of the intervals shown: 1 - ALPHA
POWER = 0.8  # the chance a planned number of seeds resolves a pair (seeds_needed)
MIN_SEEDS = 3  # fewer seeds give intervals too wide to say anything
MAX_SEEDS_PLANNED = 10_000  # seeds_needed says "more than this" beyond it
REAL = "real difference"
EQUIVALENT = "equivalent"
INCONCLUSIVE = "inconclusive"
CORRECTION = "Benjamini-Hochberg"
PAIRED, WELCH = "paired t-test", "Welch's t-test"


@dataclass(frozen=True)
class Estimate:
    """A mean over ``n`` seeds and its 95% interval (NaN bounds for a single value)."""

    mean: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class Comparison:
    """``a - b``: the mean difference, its 95% interval, both tests and the verdict.

    ``p_value`` is the two-sided test of "no difference", ``p_equivalence`` TOST's against
    ``±margin``; ``p_adjusted`` and ``p_equivalence_adjusted`` are the same after a family
    correction (``adjust``; equal to the raw ones until then). ``sd`` is the spread the
    tests saw: of the per-seed differences (paired), or ``sqrt(sd_a² + sd_b²)`` (Welch).
    ``seeds_needed`` is worked out for an inconclusive pair when first read.
    """

    difference: float
    low: float
    high: float
    p_value: float
    test: str  # PAIRED | WELCH
    n: int  # pairs (paired) or the smaller sample (Welch)
    verdict: str
    margin: float = 0.0
    p_equivalence: float = math.nan
    sd: float = math.nan
    alpha: float = ALPHA
    p_adjusted: float = math.nan
    p_equivalence_adjusted: float = math.nan

    @functools.cached_property
    def seeds_needed(self) -> int | None:
        """The seeds an inconclusive comparison needs (``seeds_needed``, and never fewer than
        one more than it has: these did not do); None when resolved or beyond planning.
        Worked out when read: most comparisons of a simulated family never are."""
        if self.verdict != INCONCLUSIVE:
            return None
        needed = seeds_needed(self.sd, self.margin, self.test == PAIRED, self.alpha)
        return None if needed is None else max(needed, self.n + 1)

    def to_dict(self) -> dict[str, object]:
        """Every field, the seeds needed and whether TOST passed, for ``results.json``."""
        return {
            **dataclasses.asdict(self),
            "seeds_needed": self.seeds_needed,
            "within_margin": self.within_margin,
        }

    @property
    def real(self) -> bool:
        return self.verdict == REAL

    @property
    def within_margin(self) -> bool:
        """The equivalence test passed (whatever the verdict: a real difference can be small)."""
        p = self.p_equivalence_adjusted
        return math.isfinite(p) and p < self.alpha


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


def verdict(p_value: float, p_equivalence: float = math.nan, alpha: float = ALPHA) -> str:
    """Real when the difference test rejects; else equivalent when TOST does; else
    inconclusive (a NaN p-value rejects nothing)."""
    if math.isfinite(p_value) and p_value < alpha:
        return REAL
    if math.isfinite(p_equivalence) and p_equivalence < alpha:
        return EQUIVALENT
    return INCONCLUSIVE


def tost_power(
    n: int | np.ndarray, sd: float, margin: float, paired: bool, alpha: float = ALPHA
) -> float | np.ndarray:
    """The chance that TOST at level ``alpha`` shows equivalence within ``±margin`` with ``n``
    seeds when the true difference is 0 and the per-seed spread is ``sd``: both one-sided
    t statistics follow a noncentral t (``scipy.stats.nct``) with noncentrality
    ``margin / (sd / sqrt(n))``; both must pass, ``P = 2 P(T > t_crit) - 1`` (Owen 1965's
    exact form at zero difference, clipped at 0). Welch's degrees of freedom are taken as
    ``2n - 2`` (equal spreads). ``n`` may be an array of counts: one power each."""
    counts = np.asarray(n, dtype=np.float64)
    if sd == 0:
        power = np.where(counts >= 2, 1.0 if margin > 0 else 0.0, 0.0)
    else:
        stats = _scipy_stats()
        usable = np.maximum(counts, 2)  # below 2 seeds: no test, no power (set below)
        df = usable - 1 if paired else 2 * usable - 2
        critical = stats.t.ppf(1 - alpha, df)
        shift = margin / (sd / np.sqrt(usable))
        power = np.where(
            counts >= 2, np.maximum(0.0, 2 * stats.nct.sf(critical, df, shift) - 1), 0.0
        )
    return float(power) if np.ndim(n) == 0 else power


def seeds_needed(
    sd: float, margin: float, paired: bool, alpha: float = ALPHA, power: float = POWER
) -> int | None:
    """The fewest seeds with which TOST has ``power`` to show equivalence within ``±margin``
    if the frameworks do not differ, the spread being ``sd`` (the observed one). With that
    many seeds a true difference of ``margin`` or more is also found real with about the same
    power: so it is the count that resolves the pair either way, unless the true difference
    lies close to the margin. None when no count up to ``MAX_SEEDS_PLANNED`` does (or the
    margin is 0)."""
    if not margin > 0 or not math.isfinite(sd):
        return None
    # The power grows with the count: look through ever larger blocks of counts, each block
    # one vectorised call, and take the first count that reaches it.
    low = 2
    while low <= MAX_SEEDS_PLANNED:
        counts = np.arange(low, min(4 * low, MAX_SEEDS_PLANNED) + 1)
        reached = np.flatnonzero(tost_power(counts, sd, margin, paired, alpha) >= power)
        if reached.size:
            return int(counts[reached[0]])
        low = int(counts[-1]) + 1
    return None


def _decide(result: Comparison) -> Comparison:
    """The verdict from the adjusted p-values."""
    decided = verdict(result.p_adjusted, result.p_equivalence_adjusted, result.alpha)
    return dataclasses.replace(result, verdict=decided)


def _exact(difference: float, margin: float, test: str, n: int, alpha: float) -> Comparison:
    """No spread: the difference is exact; real unless 0, within the margin when smaller."""
    p = 1.0 if difference == 0 else 0.0
    p_eq = 0.0 if abs(difference) < margin or difference == 0 else 1.0
    return _decide(
        Comparison(difference, difference, difference, p, test, n, "", margin, p_eq, 0.0,
                   alpha, p, p_eq)
    )  # fmt: skip


def _tost(difference: float, se: float, df: float, margin: float) -> float:
    """TOST's p-value: the larger of the one-sided t-tests of "difference > -margin" and
    "difference < +margin", for a mean ``difference`` with standard error ``se`` on ``df``
    degrees of freedom (those of the paired or Welch test: shifting one sample by the margin
    moves the mean, not the spread)."""
    if not margin > 0:
        return math.nan
    t = _scipy_stats().t
    above = t.sf((difference + margin) / se, df)
    below = t.cdf((difference - margin) / se, df)
    return float(max(above, below))


def compare_samples(
    a: Mapping[int, float], b: Mapping[int, float], margin: float = 0.0, alpha: float = ALPHA
) -> Comparison:
    """Compare two samples keyed by seed: paired where they share at least two seeds and
    every seed of each is in the other, Welch's t-test otherwise; TOST against ``±margin``
    (same unit as the values; 0: no equivalence test). One comparison on its own: the
    adjusted p-values are the raw ones until ``adjust`` corrects a family."""
    stats = _scipy_stats()
    shared = sorted(set(a) & set(b))
    if len(shared) >= 2 and set(a) == set(b):
        diffs = np.array([a[s] - b[s] for s in shared], dtype=np.float64)
        mean = float(diffs.mean())
        if np.all(diffs == diffs[0]):
            return _exact(mean, margin, PAIRED, len(diffs), alpha)
        xa = np.array([a[s] for s in shared], dtype=np.float64)
        xb = np.array([b[s] for s in shared], dtype=np.float64)
        result = _quiet_ttest(stats.ttest_rel, xa, xb)
        interval = result.confidence_interval(CONFIDENCE)
        sd = float(diffs.std(ddof=1))
        p, p_eq = float(result.pvalue), _tost(mean, sd / math.sqrt(len(diffs)), result.df, margin)
        return _decide(
            Comparison(mean, float(interval.low), float(interval.high), p, PAIRED, len(diffs),
                       "", margin, p_eq, sd, alpha, p, p_eq)
        )  # fmt: skip
    xa, xb = np.asarray(list(a.values()), float), np.asarray(list(b.values()), float)
    mean = float(xa.mean() - xb.mean()) if xa.size and xb.size else math.nan
    n = min(xa.size, xb.size)
    if n < 2:
        nan = math.nan
        return _decide(Comparison(mean, nan, nan, nan, WELCH, 0, "", margin, alpha=alpha))
    if np.all(xa == xa[0]) and np.all(xb == xb[0]):
        return _exact(mean, margin, WELCH, n, alpha)
    result = _quiet_ttest(stats.ttest_ind, xa, xb, equal_var=False)
    interval = result.confidence_interval(CONFIDENCE)
    se = math.sqrt(float(xa.var(ddof=1)) / xa.size + float(xb.var(ddof=1)) / xb.size)
    p, p_eq = float(result.pvalue), _tost(mean, se, float(result.df), margin)
    sd = math.hypot(float(xa.std(ddof=1)), float(xb.std(ddof=1)))
    return _decide(
        Comparison(mean, float(interval.low), float(interval.high), p, WELCH, n, "", margin,
                   p_eq, sd, alpha, p, p_eq)
    )  # fmt: skip


def adjust(results: Sequence[Comparison]) -> list[Comparison]:
    """The comparisons of one family with Benjamini-Hochberg adjusted p-values (difference
    tests and equivalence tests each a family of their own; NaN p-values stay out) and the
    verdicts they give."""
    stats = _scipy_stats()

    def adjusted(values: list[float]) -> list[float]:
        finite = [i for i, v in enumerate(values) if math.isfinite(v)]
        out = [math.nan] * len(values)
        if finite:
            fixed = stats.false_discovery_control([values[i] for i in finite], method="bh")
            for i, v in zip(finite, np.atleast_1d(fixed), strict=True):
                out[i] = float(v)
        return out

    p = adjusted([r.p_value for r in results])
    p_eq = adjusted([r.p_equivalence for r in results])
    return [
        _decide(dataclasses.replace(r, p_adjusted=pa, p_equivalence_adjusted=pe))
        for r, pa, pe in zip(results, p, p_eq, strict=True)
    ]


def look_schedule(first: int, most: int) -> list[int]:
    """The seed counts at which ``--seeds auto:MAX`` looks at the verdicts: from ``first``,
    growing by at least half each round, ``most`` last. Fixed before the first look, so
    that its length bounds the looks and the level can be split among them."""
    counts = [min(first, most)]
    while counts[-1] < most:
        counts.append(min(most, max(counts[-1] + 1, math.ceil(counts[-1] * 1.5))))
    return counts


def look_alpha(looks: int) -> float:
    """The level of each of ``looks`` looks at the same pairs: Bonferroni over the looks
    (``ALPHA / looks``), so that looking again after every round keeps the chance of any
    false verdict at ``ALPHA``."""
    return ALPHA / max(1, looks)
