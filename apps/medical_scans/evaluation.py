"""Binary classification figures a clinician asks for, in numpy: the decision threshold,
sensitivity, specificity, precision, accuracy, and the ROC AUC (``suite.metrics``). The
trainer uses them to choose the threshold on the validation split; benchmarks and tests use
them to check models."""

from __future__ import annotations

import numpy as np

from suite.metrics import roc_auc


def choose_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold that maximises Youden's J (sensitivity + specificity - 1) on
    ``labels``: the midpoint between the two scores where the decision flips. 0.5 when one
    class is missing."""
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    candidates = np.unique(scores)
    best, best_j = 0.5, -np.inf
    for i, t in enumerate(candidates):
        predicted = scores >= t
        j = (predicted & labels).sum() / n_pos + (~predicted & ~labels).sum() / n_neg - 1
        if j > best_j:
            below = candidates[i - 1] if i else 0.0
            best, best_j = (t + below) / 2.0, j
    return float(best)


def binary_report(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """AUC, and accuracy, sensitivity, specificity and precision at ``threshold``."""
    labels = np.asarray(labels).astype(bool).ravel()
    predicted = np.asarray(scores).ravel() >= threshold
    tp, tn = int((predicted & labels).sum()), int((~predicted & ~labels).sum())
    fp, fn = int((predicted & ~labels).sum()), int((~predicted & labels).sum())

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    return {"auc": roc_auc(labels, scores), "accuracy": ratio(tp + tn, len(labels)),
            "sensitivity": ratio(tp, tp + fn), "specificity": ratio(tn, tn + fp),
            "precision": ratio(tp, tp + fp), "threshold": float(threshold), "n": len(labels),
            "tp": tp, "tn": tn, "fp": fp, "fn": fn}
