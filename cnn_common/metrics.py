"""Loss, accuracy and predictions from logits; confusion matrix and per-class report.

Every framework's ``predict`` and ``evaluate`` are made here from its own ``predict_logits``
(``readouts``), so the test loss is computed one way everywhere: a float64 log-softmax of the
logits.

Accuracy here is micro-averaged (correct / total), as Keras and NumPy report it; torchmetrics'
``MulticlassAccuracy`` defaults to the macro average, which is a different number.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Predict = Callable[[Any, np.ndarray], np.ndarray]  # (model, x (N, H, W, C)) -> (N, K)
Evaluate = Callable[[Any, np.ndarray, np.ndarray], tuple[float, float, np.ndarray]]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """``logits - logsumexp(logits)`` per row in float64, stable for large logits.

    ``(N, K) -> (N, K)`` float64: the row maximum is subtracted before ``exp``.
    """
    z = np.asarray(logits, dtype=np.float64)
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities ``(N, K)`` from logits, in the logits' dtype; rows sum to 1."""
    logits = np.asarray(logits)
    dtype = logits.dtype if np.issubdtype(logits.dtype, np.floating) else np.float64
    return np.exp(log_softmax(logits)).astype(dtype)


def cross_entropy(logits: np.ndarray, y: np.ndarray) -> float:
    """Mean softmax cross-entropy of ``logits (N, K)`` against labels ``y (N,)``, in float64;
    NaN for an empty set."""
    y = np.asarray(y, dtype=np.int64)
    if len(y) == 0:
        return float("nan")
    return -float(log_softmax(logits)[np.arange(len(y)), y].mean())


def evaluate_logits(logits: np.ndarray, y: np.ndarray) -> tuple[float, float, np.ndarray]:
    """``(loss, accuracy, predictions)`` of ``logits (N, K)`` against labels ``y (N,)``.

    The loss is ``cross_entropy`` (float64), the accuracy micro-averaged and the predictions
    ``(N,)`` int64 (the first maximum of each row). NaN loss and accuracy for an empty set.
    """
    y = np.asarray(y, dtype=np.int64)
    predictions = np.asarray(logits).argmax(axis=1).astype(np.int64)
    acc = accuracy(y, predictions) if len(y) else float("nan")
    return cross_entropy(logits, y), acc, predictions


def readouts(predict_logits: Predict) -> tuple[Predict, Evaluate]:
    """A framework's contract ``predict`` and ``evaluate`` over its own ``predict_logits``."""

    def predict(model: Any, x: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, K)`` (softmax of the logits) for images ``x (N, H, W, C)``."""
        return softmax(predict_logits(model, x))

    def evaluate(model: Any, x: np.ndarray, y: np.ndarray) -> tuple[float, float, np.ndarray]:
        """Mean softmax cross-entropy, accuracy and int64 predictions ``(N,)`` on
        ``x (N, H, W, C)``, ``y (N,)``: ``evaluate_logits`` of the framework's logits."""
        return evaluate_logits(predict_logits(model, x), y)

    for made in (predict, evaluate):
        made.__module__ = predict_logits.__module__
        made.__qualname__ = made.__name__
    return predict, evaluate


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of ``y_pred`` equal to ``y_true`` (both ``(N,)`` class indices)."""
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred))) if len(y_true) else 0.0


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``(K, K)`` int64 counts: row = true class, column = predicted class."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def classification_report(
    cm: np.ndarray, class_names: list[str] | tuple[str, ...] | None = None
) -> dict[str, dict[str, float]]:
    """Per-class precision, recall, F1 and support from a confusion matrix, plus
    ``macro avg`` and ``weighted avg`` rows (scikit-learn's definitions; 0 where undefined)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(cm))]
    report = {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(names, precision, recall, f1, support, strict=True)
    }
    total = support.sum()
    report["macro avg"] = {
        "precision": float(precision.mean()),
        "recall": float(recall.mean()),
        "f1": float(f1.mean()),
        "support": int(total),
    }
    weights = support / total if total else support
    report["weighted avg"] = {
        "precision": float(precision @ weights),
        "recall": float(recall @ weights),
        "f1": float(f1 @ weights),
        "support": int(total),
    }
    return report
