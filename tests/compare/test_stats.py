"""compare.stats against answers known in advance: intervals computed by hand from Student's t,
verdicts on samples whose difference is known, and which test is chosen when."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from compare.stats.inference import EQUIVALENT, INCONCLUSIVE, REAL, compare_samples, mean_interval

PAIRED, WELCH = "paired t-test", "Welch's t-test"


def keyed(values: np.ndarray, first_seed: int = 0) -> dict[int, float]:
    """Values keyed by seed, as the report and the ablation pass them."""
    return {first_seed + i: float(v) for i, v in enumerate(values)}


def known_samples() -> tuple[np.ndarray, np.ndarray]:
    """Two normal samples of 30 with sd 0.1 whose true means differ by 0.5."""
    rng = np.random.default_rng(20240607)
    return rng.normal(1.0, 0.1, 30), rng.normal(0.5, 0.1, 30)


# ----------------------------------------------------------------------------- mean_interval


def test_mean_interval_is_students_t_by_hand() -> None:
    values = np.random.default_rng(3).normal(0.97, 0.004, 5)
    got = mean_interval(values)
    n = len(values)
    half = scipy_stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n)
    assert got.n == n
    assert got.mean == pytest.approx(values.mean(), abs=1e-15)
    assert got.low == pytest.approx(values.mean() - half, rel=1e-12)
    assert got.high == pytest.approx(values.mean() + half, rel=1e-12)
    assert got.low < got.mean < got.high


def test_mean_interval_of_equal_values_is_the_value() -> None:
    got = mean_interval([0.25, 0.25, 0.25])
    assert (got.mean, got.low, got.high, got.n) == (0.25, 0.25, 0.25, 3)


@pytest.mark.parametrize("values", [[0.9], []])
def test_mean_interval_of_fewer_than_two_values_is_nan(values: list[float]) -> None:
    got = mean_interval(values)
    assert got.n == len(values)
    assert math.isnan(got.low) and math.isnan(got.high)
    assert got.mean == 0.9 if values else math.isnan(got.mean)


# ----------------------------------------------------------------------------- compare_samples


def test_paired_known_difference_is_real_and_its_interval_is_by_hand() -> None:
    a, b = known_samples()
    got = compare_samples(keyed(a), keyed(b))
    assert got.test == PAIRED and got.n == 30
    diffs = a - b
    half = scipy_stats.t.ppf(0.975, 29) * diffs.std(ddof=1) / math.sqrt(30)
    assert got.difference == pytest.approx(diffs.mean(), rel=1e-12)
    assert got.low == pytest.approx(diffs.mean() - half, rel=1e-12)
    assert got.high == pytest.approx(diffs.mean() + half, rel=1e-12)
    assert got.low < 0.5 < got.high  # the true difference
    t = diffs.mean() / (diffs.std(ddof=1) / math.sqrt(30))
    assert got.p_value == pytest.approx(2 * scipy_stats.t.sf(abs(t), 29), rel=1e-6)
    assert got.p_value < 1e-10
    assert got.verdict == REAL and got.real


def test_welch_known_difference_is_real_and_its_interval_is_by_hand() -> None:
    a, b = known_samples()
    got = compare_samples(keyed(a), keyed(b, first_seed=100))  # no seed in common
    assert got.test == WELCH and got.n == 30
    va, vb = a.var(ddof=1) / 30, b.var(ddof=1) / 30
    df = (va + vb) ** 2 / (va**2 / 29 + vb**2 / 29)  # Welch-Satterthwaite
    half = scipy_stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    diff = a.mean() - b.mean()
    assert got.difference == pytest.approx(diff, rel=1e-12)
    assert got.low == pytest.approx(diff - half, rel=1e-10)
    assert got.high == pytest.approx(diff + half, rel=1e-10)
    assert got.low < 0.5 < got.high
    t = diff / math.sqrt(va + vb)
    assert got.p_value == pytest.approx(2 * scipy_stats.t.sf(abs(t), df), rel=1e-6)
    assert got.p_value < 1e-10
    assert got.verdict == REAL


def test_identical_samples_differ_by_exactly_zero() -> None:
    values = keyed(np.array([0.91, 0.93, 0.92, 0.95]))
    paired = compare_samples(values, dict(values))
    assert paired.test == PAIRED
    assert (paired.difference, paired.low, paired.high, paired.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert paired.verdict == EQUIVALENT and not paired.real  # exactly, within any margin
    welch = compare_samples(values, {s + 10: v for s, v in values.items()})
    assert welch.test == WELCH
    assert welch.difference == 0.0 and welch.p_value == pytest.approx(1.0)
    assert welch.low < 0 < welch.high
    assert welch.verdict == INCONCLUSIVE  # no margin given: nothing to be equivalent within


def test_a_constant_offset_on_every_seed_is_exact_and_real() -> None:
    # dyadic values: a - b is exactly 0.125 on every seed
    a = {0: 0.5, 1: 0.75, 2: 0.625, 3: 0.875}
    b = {seed: value - 0.125 for seed, value in a.items()}
    got = compare_samples(a, b)
    assert got.test == PAIRED
    assert (got.difference, got.low, got.high, got.p_value) == (0.125, 0.125, 0.125, 0.0)
    assert got.verdict == REAL
    reverse = compare_samples(b, a)
    assert (reverse.difference, reverse.verdict) == (-0.125, REAL)


@pytest.mark.parametrize("rng_seed", range(8))
def test_samples_of_one_distribution_are_within_noise(rng_seed: int) -> None:
    """Five 'training seeds' per framework drawn from the same distribution: no verdict of a
    real difference, paired or not (the RNG is fixed, so the draws are too)."""
    rng = np.random.default_rng(rng_seed)
    a, b = rng.normal(0.98, 0.002, 5), rng.normal(0.98, 0.002, 5)
    for got in (compare_samples(keyed(a), keyed(b)), compare_samples(keyed(a), keyed(b, 5))):
        assert got.verdict == INCONCLUSIVE, (got.test, got.p_value)
        assert got.low < 0 < got.high
        assert 0.05 <= got.p_value <= 1


@pytest.mark.parametrize("offset", [0, 100])
def test_the_false_positive_rate_is_about_five_percent(offset: int) -> None:
    """Over many draws of two samples from one distribution, about 5% are called real: the
    95% level is the one stated (paired when the seeds are shared, Welch otherwise)."""
    rng = np.random.default_rng(7)
    real = 0
    trials = 400
    for _ in range(trials):
        a, b = rng.normal(0.9, 0.01, 5), rng.normal(0.9, 0.01, 5)
        real += compare_samples(keyed(a), keyed(b, offset)).real
    assert 0.02 * trials <= real <= 0.09 * trials


def test_fewer_than_two_values_give_a_nan_interval() -> None:
    got = compare_samples({0: 0.9}, {0: 0.8})
    assert got.test == WELCH and got.n == 0
    assert got.difference == pytest.approx(0.1)
    assert math.isnan(got.low) and math.isnan(got.high) and math.isnan(got.p_value)
    assert got.verdict == INCONCLUSIVE and got.seeds_needed is None
    one_side = compare_samples({0: 0.9, 1: 0.8, 2: 0.85}, {0: 0.8})
    assert math.isnan(one_side.low) and one_side.test == WELCH


def test_paired_only_when_both_have_the_same_seeds() -> None:
    a = {0: 0.91, 1: 0.93, 2: 0.92}
    b = {0: 0.90, 1: 0.935, 2: 0.91}
    assert compare_samples(a, b).test == PAIRED
    assert compare_samples(a, {1: 0.935, 2: 0.91, 0: 0.90}).test == PAIRED  # order is no matter
    # one seed differs, one more seed, one fewer: Welch on what each has
    for other in ({0: 0.90, 1: 0.935, 3: 0.91}, {**b, 3: 0.92}, {0: 0.90, 1: 0.935}):
        got = compare_samples(a, other)
        assert got.test == WELCH, other
        assert got.n == min(len(a), len(other))
        xa, xb = np.array(list(a.values())), np.array(list(other.values()))
        assert got.difference == pytest.approx(xa.mean() - xb.mean(), rel=1e-12)
    # the pairing matters: the paired interval is the one of the per-seed differences
    paired = compare_samples(a, b)
    diffs = np.array([a[s] - b[s] for s in a])
    half = scipy_stats.t.ppf(0.975, 2) * diffs.std(ddof=1) / math.sqrt(3)
    assert paired.high - paired.low == pytest.approx(2 * half, rel=1e-10)
