"""cnn_common.metrics: the loss, accuracy and predictions every framework's ``evaluate``
computes from its logits, in float64, stable for large logits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnn_common.metrics import cross_entropy, evaluate_logits, log_softmax, softmax

LOGITS = np.array([[2.0, 1.0, 0.0], [0.5, 0.5, 3.0], [1.0, 4.0, 1.0]], dtype=np.float32)
LABELS = np.array([0, 1, 1])


def hand_loss() -> float:
    """-mean log softmax of the true class, one exp and log at a time."""
    total = 0.0
    for row, label in zip(LOGITS.tolist(), LABELS.tolist(), strict=True):
        total += math.log(sum(math.exp(v) for v in row)) - row[label]
    return total / len(LABELS)


def test_evaluate_logits_by_hand() -> None:
    loss, accuracy, predictions = evaluate_logits(LOGITS, LABELS)
    assert type(loss) is float
    assert loss == pytest.approx(hand_loss(), rel=1e-15, abs=0)  # float64, not float32
    assert accuracy == pytest.approx(2 / 3)  # rows 0 and 2 right, row 1 wrong
    assert predictions.dtype == np.int64 and predictions.tolist() == [0, 2, 1]
    assert cross_entropy(LOGITS, LABELS) == loss


def test_the_first_maximum_is_the_prediction() -> None:
    _, _, predictions = evaluate_logits(np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0]]), [0, 0])
    assert predictions.tolist() == [0, 1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stable_for_large_logits(dtype: type) -> None:
    logits = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4 - 2.0]], dtype=dtype)
    loss, accuracy, predictions = evaluate_logits(logits, np.array([0, 2]))
    # row 0: logsumexp - 1e4 = log(1 + e^-1e4 + e^-2e4), which is 0 in float64;
    # row 1: logsumexp - (1e4 - 2) = log(1 + e^-2 + e^-1e4) + 2 (a naive exp overflows)
    row1 = math.log(1 + math.exp(-2.0)) + 2.0
    assert math.isfinite(loss)
    assert loss == pytest.approx(row1 / 2, rel=1e-12)
    assert predictions.tolist() == [0, 1] and accuracy == 0.5
    log_p = log_softmax(logits)
    assert np.isfinite(log_p).all() and log_p.dtype == np.float64
    assert log_p[0, 0] == pytest.approx(0.0, abs=1e-300)


def test_an_empty_set_gives_nan() -> None:
    loss, accuracy, predictions = evaluate_logits(np.zeros((0, 10)), np.zeros(0, dtype=np.int64))
    assert math.isnan(loss) and math.isnan(accuracy)
    assert predictions.shape == (0,) and predictions.dtype == np.int64
    assert math.isnan(cross_entropy(np.zeros((0, 3)), []))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_rows_sum_to_one(dtype: type) -> None:
    logits = np.random.default_rng(0).normal(scale=30, size=(50, 10)).astype(dtype)
    logits[0] = [1e4] + [0] * 9  # one row that would overflow a naive exp
    p = softmax(logits)
    assert p.dtype == dtype and p.shape == logits.shape
    assert (p >= 0).all() and (p <= 1).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=10 * np.finfo(dtype).eps)
    assert p[0, 0] == 1.0
    np.testing.assert_array_equal(p.argmax(axis=1), logits.argmax(axis=1))
    np.testing.assert_allclose(np.log(softmax(LOGITS.astype(np.float64))), log_softmax(LOGITS))
    assert softmax(np.array([[1, 2, 3]])).dtype == np.float64  # integer logits: float64
