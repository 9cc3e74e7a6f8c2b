"""The three verdicts against known truth, on synthetic samples (no training): equal means give
"equivalent" when the spread is small and "inconclusive" when it is large (with a seed count
that does resolve it), shifted means give "real difference", and over many families of 15
pairs drawn from one distribution the false "real difference" stays at the stated level."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from compare.stats.inference import (
    ALPHA,
    EQUIVALENT,
    INCONCLUSIVE,
    PAIRED,
    REAL,
    WELCH,
    adjust,
    compare_samples,
    look_alpha,
    look_schedule,
    seeds_needed,
    tost_power,
)

MARGIN = 0.005  # half an accuracy point


def seeds_of(values: np.ndarray) -> dict[int, float]:
    return {seed: float(v) for seed, v in enumerate(values)}


def draw_pair(rng: np.random.Generator, n: int, shift: float, sd: float) -> tuple[dict, dict]:
    """Two frameworks on the same ``n`` seeds: a shared per-seed part (what the seed fixes)
    plus each framework's own noise of ``sd`` per seed; ``a`` is ``shift`` above ``b``."""
    common = rng.normal(0.99, 0.002, n)
    return (
        seeds_of(common + shift + rng.normal(0, sd / math.sqrt(2), n)),
        seeds_of(common + rng.normal(0, sd / math.sqrt(2), n)),
    )


def test_equal_means_and_a_small_spread_are_equivalent() -> None:
    """Every pair's 90% interval lies within the margin; the verdict is "equivalent" but
    where the difference test errs (its 5%: the means are equal), which the family
    correction is for."""
    rng = np.random.default_rng(11)
    results = [compare_samples(*draw_pair(rng, 5, 0.0, 0.001), MARGIN) for _ in range(50)]
    assert all(r.within_margin for r in results)
    verdicts = [r.verdict for r in results]
    assert INCONCLUSIVE not in verdicts and verdicts.count(EQUIVALENT) >= 45, verdicts


def test_a_shifted_mean_is_a_real_difference() -> None:
    rng = np.random.default_rng(12)
    results = [compare_samples(*draw_pair(rng, 5, 0.01, 0.002), MARGIN) for _ in range(50)]
    assert all(r.verdict == REAL for r in results)
    assert all(not r.within_margin for r in results)  # two points apart: beyond the margin too


def test_equal_means_and_a_large_spread_are_inconclusive_until_enough_seeds() -> None:
    """Three seeds with a spread of 1.2 points cannot place the difference within half a
    point: inconclusive, with a count of seeds. Drawing that many seeds again from the same
    generator resolves the pair in most repetitions (the count is planned for 80%)."""
    rng = np.random.default_rng(13)
    sd = 0.012
    first = compare_samples(*draw_pair(rng, 3, 0.0, sd), MARGIN)
    assert first.verdict == INCONCLUSIVE
    assert first.seeds_needed is not None and first.seeds_needed > 3
    assert first.seeds_needed == seeds_needed(first.sd, MARGIN, paired=True)
    resolved = [
        compare_samples(*draw_pair(rng, first.seeds_needed, 0.0, sd), MARGIN).verdict
        for _ in range(200)
    ]
    share = 1 - resolved.count(INCONCLUSIVE) / len(resolved)
    assert share > 0.5, (first.seeds_needed, share)
    assert resolved.count(REAL) <= 0.1 * len(resolved)  # the means are equal


def test_planning_from_the_observed_spread_resolves_most_pairs() -> None:
    """The whole procedure, repeated: three seeds, the count they ask for, that many seeds
    run afresh; most pairs that were inconclusive end resolved."""
    rng = np.random.default_rng(14)
    outcomes = []
    for _ in range(100):
        first = compare_samples(*draw_pair(rng, 3, 0.0, 0.008), MARGIN)
        if first.verdict != INCONCLUSIVE or first.seeds_needed is None:
            continue
        again = compare_samples(*draw_pair(rng, first.seeds_needed, 0.0, 0.008), MARGIN)
        outcomes.append(again.verdict != INCONCLUSIVE)
    assert len(outcomes) >= 50
    assert sum(outcomes) / len(outcomes) > 0.5


def test_the_power_behind_the_seed_count_matches_a_simulation() -> None:
    """``tost_power`` (noncentral t) against TOST run on 2,000 simulated samples."""
    rng = np.random.default_rng(15)
    n, sd = 12, 0.006
    expected = tost_power(n, sd, MARGIN, paired=True)
    passed = 0
    for _ in range(2000):
        diffs = rng.normal(0, sd, n)
        passed += compare_samples(seeds_of(diffs), seeds_of(np.zeros(n)), MARGIN).within_margin
    assert passed / 2000 == pytest.approx(expected, abs=0.03)
    assert seeds_needed(sd, MARGIN, paired=True) == next(
        k for k in range(2, 200) if tost_power(k, sd, MARGIN, paired=True) >= 0.8
    )


def test_a_difference_at_the_margin_is_called_equivalent_at_most_five_percent_of_the_time() -> None:
    """TOST's own error: a true difference of exactly the margin is not within it."""
    rng = np.random.default_rng(16)
    trials = 1000
    wrong = sum(
        compare_samples(*draw_pair(rng, 8, MARGIN, 0.004), MARGIN).verdict == EQUIVALENT
        for _ in range(trials)
    )
    assert wrong <= ALPHA * trials


def family_of_fifteen(rng: np.random.Generator, seeds: int) -> list:
    """Six frameworks that do not differ, on the same seeds: their 15 pairwise comparisons."""
    common = rng.normal(0.99, 0.002, seeds)
    runs = [seeds_of(common + rng.normal(0, 0.003, seeds)) for _ in range(6)]
    return [compare_samples(a, b, MARGIN) for a, b in itertools.combinations(runs, 2)]


def test_over_1000_null_families_of_15_pairs_false_real_differences_stay_within_five_percent() -> (
    None
):
    """With the Benjamini-Hochberg correction, the share of families in which any of the 15
    pairs is called a real difference (all are false: nothing differs) is at most 5%; the
    same p-values uncorrected call one in far more families, which the test also shows."""
    rng = np.random.default_rng(17)
    families = 1000
    corrected = raw = 0
    for _ in range(families):
        pairs = family_of_fifteen(rng, 5)
        raw += any(p.verdict == REAL for p in pairs)
        corrected += any(p.verdict == REAL for p in adjust(pairs))
    assert corrected <= ALPHA * families, corrected
    assert raw > 3 * ALPHA * families, raw


def test_adjust_is_benjamini_hochberg_on_each_family() -> None:
    rng = np.random.default_rng(18)
    pairs = family_of_fifteen(rng, 4)
    fixed = adjust(pairs)
    expected = scipy_stats.false_discovery_control([p.p_value for p in pairs], method="bh")
    assert [f.p_adjusted for f in fixed] == pytest.approx(list(expected))
    expected_eq = scipy_stats.false_discovery_control([p.p_equivalence for p in pairs], method="bh")
    assert [f.p_equivalence_adjusted for f in fixed] == pytest.approx(list(expected_eq))
    assert all(f.p_adjusted >= p.p_value for f, p in zip(fixed, pairs, strict=True))


def test_tost_is_the_ninety_percent_interval_inside_the_margin() -> None:
    rng = np.random.default_rng(19)
    for _ in range(100):
        a, b = draw_pair(rng, 6, rng.uniform(-0.006, 0.006), 0.003)
        got = compare_samples(a, b, MARGIN)
        diffs = np.array([a[s] - b[s] for s in a])
        interval = scipy_stats.ttest_1samp(diffs, 0.0).confidence_interval(0.90)
        inside = interval.low > -MARGIN and interval.high < MARGIN
        assert got.within_margin == inside


@pytest.mark.parametrize("paired", [True, False])
def test_tost_gives_scipys_one_sided_t_tests_against_the_shifted_sample(paired: bool) -> None:
    """The equivalence p-value is the larger of scipy's two one-sided tests with one sample
    moved by the margin, paired or Welch's (for Welch the samples have different seeds)."""
    rng = np.random.default_rng(21)
    for _ in range(20):
        a, b = draw_pair(rng, 6, rng.uniform(-0.006, 0.006), 0.004)
        if not paired:
            b = {seed + 100: v for seed, v in b.items()}
        xa, xb = np.array(list(a.values())), np.array(list(b.values()))
        test = scipy_stats.ttest_rel if paired else scipy_stats.ttest_ind
        extra = {} if paired else {"equal_var": False}
        above = test(xa + MARGIN, xb, alternative="greater", **extra).pvalue
        below = test(xa - MARGIN, xb, alternative="less", **extra).pvalue
        got = compare_samples(a, b, MARGIN)
        assert got.test == (PAIRED if paired else WELCH)
        assert got.p_equivalence == pytest.approx(max(above, below), rel=1e-9, abs=1e-12)


def test_the_looks_are_fixed_in_advance_and_share_the_level() -> None:
    assert look_schedule(3, 20) == [3, 5, 8, 12, 18, 20]
    assert look_schedule(3, 3) == [3]
    assert look_schedule(5, 4) == [4]
    assert look_alpha(6) == pytest.approx(ALPHA / 6)
    assert look_alpha(1) == ALPHA


def test_repeated_looks_with_the_split_level_keep_false_differences_at_five_percent() -> None:
    """Looking after every round of ``look_schedule(3, 20)`` at ``look_alpha`` each: over 1,000
    null pairs the chance of a false "real difference" at any look is at most 5%; at the
    full 5% each look it is well above."""
    rng = np.random.default_rng(20)
    schedule = look_schedule(3, 20)
    split = full = 0
    trials = 1000
    for _ in range(trials):
        a, b = draw_pair(rng, schedule[-1], 0.0, 0.004)
        seen_split = seen_full = False
        for n in schedule:
            first_a = {s: a[s] for s in range(n)}
            first_b = {s: b[s] for s in range(n)}
            seen_split |= compare_samples(first_a, first_b, alpha=look_alpha(6)).real
            seen_full |= compare_samples(first_a, first_b).real
        split += seen_split
        full += seen_full
    assert split <= ALPHA * trials, split
    assert full > 1.5 * ALPHA * trials, full
