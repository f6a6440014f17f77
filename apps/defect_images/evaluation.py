"""Quality-control figures in numpy: AUROC, anomaly thresholds, detection and classification
reports, and how much of an explanation's heat falls inside the defect boxes. The trainer
uses them to choose the false-alarm threshold on the validation split (Youden's J is
``suite.metrics.decision_threshold``); the benchmark, tests and the
``explain`` command use them to report."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from suite.metrics import roc_auc


def false_alarm_threshold(good_scores: np.ndarray, target: float) -> float:
    """A threshold that flags at most ``target`` of ``good_scores`` (flagged: score >=
    threshold): with k = floor(target * n) good parts allowed above it, midway between the
    k-th and the (k+1)-th highest good score (just above the highest when k = 0)."""
    scores = np.sort(np.asarray(good_scores, np.float64).ravel())[::-1]
    if not len(scores):
        raise ValueError("false_alarm_threshold: no good-part scores")
    allowed = int(np.floor(target * len(scores)))
    if allowed >= len(scores):
        return float(scores[-1])
    kept_below = scores[allowed]
    if allowed and scores[allowed - 1] > kept_below:
        return float((scores[allowed - 1] + kept_below) / 2.0)
    return float(np.nextafter(kept_below, np.inf))


def detection_report(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """AUROC, and accuracy, recall on defects, false-alarm rate and precision at
    ``threshold`` (label 1 = defect; flagged when score >= threshold)."""
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, np.float64).ravel()
    flagged = scores >= threshold
    tp, tn = int((flagged & labels).sum()), int((~flagged & ~labels).sum())
    fp, fn = int((flagged & ~labels).sum()), int((~flagged & labels).sum())

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    return {"auroc": roc_auc(labels, scores), "accuracy": ratio(tp + tn, len(labels)),
            "recall": ratio(tp, tp + fn), "false_alarm_rate": ratio(fp, fp + tn),
            "precision": ratio(tp, tp + fp), "threshold": float(threshold),
            "n": int(len(labels)), "tp": tp, "tn": tn, "fp": fp, "fn": fn}


def classification_report(labels: np.ndarray, predicted: np.ndarray,
                          class_names: Sequence[str]) -> dict:
    """Accuracy, per-class recall and precision, and the confusion matrix (rows: true
    class, columns: predicted)."""
    labels = np.asarray(labels).astype(int).ravel()
    predicted = np.asarray(predicted).astype(int).ravel()
    n = len(class_names)
    matrix = np.zeros((n, n), int)
    np.add.at(matrix, (labels, predicted), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.diag(matrix) / matrix.sum(axis=1)
        precision = np.diag(matrix) / matrix.sum(axis=0)
    return {"accuracy": float(np.mean(labels == predicted)) if len(labels) else float("nan"),
            "recall": {c: float(recall[i]) for i, c in enumerate(class_names)},
            "precision": {c: float(precision[i]) for i, c in enumerate(class_names)},
            "confusion_matrix": matrix.tolist(), "classes": list(class_names),
            "n": int(len(labels))}


def heat_in_boxes(heat: np.ndarray, mask: np.ndarray) -> dict:
    """How much of an explanation points at the annotated defect: the share of the heat
    mass [H, W] (non-negative) inside ``mask`` (bool [H, W], the boxes) against the share of
    the image the boxes cover. ``lift`` = heat share / area share (1 = no better than
    uniform heat). NaN when there is no heat or no box."""
    heat = np.clip(np.asarray(heat, np.float64), 0.0, None)
    mask = np.asarray(mask, bool)
    if heat.shape != mask.shape:
        raise ValueError(f"heat_in_boxes: heat {heat.shape} and mask {mask.shape} differ")
    total, area = heat.sum(), mask.mean()
    inside = float(heat[mask].sum() / total) if total > 0 and mask.any() else float("nan")
    return {"heat_in_boxes": inside, "box_area": float(area),
            "lift": inside / area if area > 0 and inside == inside else float("nan")}
