"""compare.crosseval.summarize on made-up logits: the same weights run in another framework
differ only where the training framework's own top two logits were a near-tie."""

from __future__ import annotations

import numpy as np
import pytest

from compare.crosseval.evaluate import NEAR_TIE, margins, summarize

N, K = 20, 10


def clear_logits(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(N, K)`` logits whose top class leads by at least 1 (far from any tie), and labels
    that agree with it on all but the last two images."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1, (N, K))
    top = rng.integers(0, K, N)
    logits[np.arange(N), top] = logits.max(axis=1) + 1.0
    labels = top.copy()
    labels[-2:] = (top[-2:] + 1) % K
    return logits, labels


def everywhere(own: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """``logits[evaluator][source]``: every framework computes each source's own logits."""
    return {evaluator: {s: v.copy() for s, v in own.items()} for evaluator in own}


def test_identical_logits_differ_nowhere() -> None:
    a, labels = clear_logits(0)
    b, _ = clear_logits(1)
    summary = summarize(everywhere({"numpy": a, "keras": b}), labels)
    assert summary["frameworks"] == ["numpy", "keras"]
    assert summary["differ"] == {
        "numpy": {"numpy": 0, "keras": 0},
        "keras": {"numpy": 0, "keras": 0},
    }
    assert summary["cases"] == [] and summary["all_near_ties"]
    # the same weights give the same accuracy wherever they run
    for source in ("numpy", "keras"):
        assert len(set(summary["accuracy"][source].values())) == 1
    assert summary["accuracy"]["numpy"]["keras"] == pytest.approx((N - 2) / N)


def test_a_flipped_near_tie_is_one_case_marked_near_tie() -> None:
    own, labels = clear_logits(2)
    image, first, second = 5, 3, 7
    own[image] = np.linspace(-1, 1, K)
    own[image, first], own[image, second] = 4.0, 4.0 - 2e-6  # margin 5e-7 of the largest
    theirs = own.copy()
    theirs[image, first], theirs[image, second] = 4.0 - 2e-6, 4.0  # rounding picks the other
    logits = everywhere({"numpy": own, "lightning": own})
    logits["lightning"]["numpy"] = theirs  # numpy's weights, run in lightning
    summary = summarize(logits, labels)
    assert summary["differ"]["numpy"] == {"numpy": 0, "lightning": 1}
    assert summary["differ"]["lightning"] == {"numpy": 0, "lightning": 0}
    (case,) = summary["cases"]
    assert case["weights"] == "numpy" and case["evaluated_in"] == "lightning"
    assert (case["image"], case["own_prediction"], case["prediction"]) == (image, first, second)
    assert case["label"] == int(labels[image])
    assert case["margin"] == pytest.approx(2e-6 / 4.0)
    assert case["near_tie"] and summary["all_near_ties"]
    assert summary["near_tie"] == NEAR_TIE


def test_a_large_flip_is_not_a_near_tie() -> None:
    own, labels = clear_logits(3)
    image = 4
    theirs = own.copy()
    theirs[image] = own[image][::-1]  # another class wins by a wide margin
    assert theirs[image].argmax() != own[image].argmax()
    logits = everywhere({"numpy": own, "pytorch": own})
    logits["numpy"]["pytorch"] = theirs  # pytorch's weights, run in numpy
    summary = summarize(logits, labels)
    assert summary["differ"]["pytorch"] == {"numpy": 1, "pytorch": 0}
    (case,) = summary["cases"]
    assert (case["weights"], case["evaluated_in"], case["image"]) == ("pytorch", "numpy", image)
    assert case["margin"] > 100 * NEAR_TIE
    assert not case["near_tie"] and not summary["all_near_ties"]
    # image 4 was right in its own framework: the accuracy drops by that image alone
    assert case["own_prediction"] == case["label"]
    moved = summary["accuracy"]["pytorch"]["pytorch"] - summary["accuracy"]["pytorch"]["numpy"]
    assert moved == pytest.approx(1 / N)


def test_margins_are_relative_to_the_largest_logit() -> None:
    logits = np.array([[1.0, 3.0, 2.0], [-4.0, 0.0, -4.0], [5.0, 5.0, 1.0]])
    np.testing.assert_allclose(margins(logits), [1 / 3, 1.0, 0.0])
