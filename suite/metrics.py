"""Evaluation figures in numpy that several apps report the same way."""

from __future__ import annotations

import numpy as np


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tie-averaged ranks; 1 = the positives
    all score higher); NaN when one class is missing."""
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # Average ranks over ties.
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(scores)]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def accuracy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Share of examples whose most probable class is the label (TFMA's
    sparse_categorical_accuracy)."""
    labels = np.asarray(labels).astype(np.int64).ravel()
    return float(np.mean(np.argmax(probabilities, axis=-1) == labels)) if len(labels) else np.nan


def sensitivity(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> float:
    """Share of the positives scored above ``threshold`` (TFMA's Recall of a binary
    classifier)."""
    labels = np.asarray(labels).astype(bool).ravel()
    hits = np.asarray(scores, dtype=np.float64).ravel() > threshold
    return float(hits[labels].mean()) if labels.any() else np.nan


def specificity(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> float:
    """Share of the negatives scored at or below ``threshold`` (TFMA's Specificity)."""
    labels = np.asarray(labels).astype(bool).ravel()
    quiet = np.asarray(scores, dtype=np.float64).ravel() <= threshold
    return float(quiet[~labels].mean()) if (~labels).any() else np.nan


THRESHOLD_RULES: tuple[str, ...] = ("youden", "sensitivity", "specificity")


def _operating_points(labels: np.ndarray, scores: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, sensitivity, specificity) of every distinct decision on ``scores``
    (positive: score >= threshold). Thresholds lie midway between neighbouring distinct
    scores, the first just below the lowest score (all positive), the last just above the
    highest (all negative)."""
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"a threshold rule needs both classes, got {n_pos} positive and "
                         f"{n_neg} negative scores")
    distinct = np.unique(scores)
    thresholds = np.r_[np.nextafter(distinct[0], -np.inf), (distinct[1:] + distinct[:-1]) / 2,
                       np.nextafter(distinct[-1], np.inf)]
    # Positives / negatives scoring at or above each distinct score, then none.
    ordered = np.searchsorted(distinct, scores)
    pos_at = np.bincount(ordered[labels], minlength=len(distinct))[::-1].cumsum()[::-1]
    neg_at = np.bincount(ordered[~labels], minlength=len(distinct))[::-1].cumsum()[::-1]
    sens = np.r_[pos_at, 0] / n_pos
    spec = 1.0 - np.r_[neg_at, 0] / n_neg
    return thresholds, sens, spec


def decision_threshold(labels: np.ndarray, scores: np.ndarray, rule: str = "youden",
                       target: float = 0.95, margin: float = 0.0) -> float:
    """The threshold on ``scores`` (positive: score >= threshold) that ``rule`` chooses on
    labelled scores:

    - "youden": the largest sensitivity + specificity - 1 (ties: the highest threshold,
      fewer false positives);
    - "sensitivity": the highest threshold whose sensitivity is at least ``target +
      margin`` (capped at 1): the margin is room for the drop expected on new data;
    - "specificity": the lowest threshold whose specificity is at least ``target +
      margin``.

    Thresholds lie midway between neighbouring distinct scores. Raises ValueError when a
    class is missing or the rule is unknown."""
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"threshold rule: expected one of {list(THRESHOLD_RULES)}, got "
                         f"{rule!r}")
    thresholds, sens, spec = _operating_points(labels, scores)
    if rule == "youden":
        j = sens + spec
        return float(thresholds[np.flatnonzero(j == j.max())[-1]])
    goal = min(1.0, target + margin)
    if rule == "sensitivity":  # sensitivity falls as the threshold rises
        return float(thresholds[np.flatnonzero(sens >= goal - 1e-12)[-1]])
    return float(thresholds[np.flatnonzero(spec >= goal - 1e-12)[0]])


def specificity_at_sensitivity(labels: np.ndarray, scores: np.ndarray,
                               target: float = 0.95) -> float:
    """The highest specificity among the thresholds whose sensitivity is at least
    ``target`` (a point of the ROC curve); NaN when a class is missing."""
    try:
        _, sens, spec = _operating_points(labels, scores)
    except ValueError:
        return float("nan")
    return float(spec[sens >= target - 1e-12].max())
