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
