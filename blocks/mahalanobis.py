"""Gaussians of feature vectors and their squared Mahalanobis distances (numpy): one fit for
an anomaly model's features and for an out-of-distribution score on a classifier's
features."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Gaussian:
    """A Gaussian of feature vectors: ||((f - mean) / std) @ whitening||^2 is the squared
    Mahalanobis distance of f."""

    mean: np.ndarray  # [C]
    std: np.ndarray  # [C]
    whitening: np.ndarray  # [C, k]


def gaussian(vectors: np.ndarray, shrinkage: float) -> Gaussian:
    """The Gaussian of ``vectors`` [n, C]: mean, standard deviation and the whitening of
    their correlation matrix shrunk towards the identity by ``shrinkage``."""
    return gaussian_from_moments(vectors.sum(axis=0), vectors.T @ vectors, len(vectors),
                                 shrinkage)


def gaussian_from_moments(total: np.ndarray, outer: np.ndarray, count: int,
                          shrinkage: float) -> Gaussian:
    """``gaussian`` from the sum and the sum of outer products of ``count`` vectors."""
    mean = total / count
    covariance = outer / count - np.outer(mean, mean)
    # A feature that never varies (a dead ReLU) gets unit scale: its deviations stay visible.
    std = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    std = np.where(std > 1e-6 * (std.max() + 1e-12), std, 1.0)
    correlation = covariance / np.outer(std, std)
    correlation = (1.0 - shrinkage) * correlation + shrinkage * np.eye(len(mean))
    values, vectors = np.linalg.eigh(correlation)
    return Gaussian(mean, std, vectors / np.sqrt(np.maximum(values, 1e-9)))


def squared_distance(vectors: np.ndarray, g: Gaussian) -> np.ndarray:
    """The squared Mahalanobis distance [n] of ``vectors`` [n, C] to ``g``."""
    white = ((np.asarray(vectors, np.float64) - g.mean) / g.std) @ g.whitening
    return np.sum(white * white, axis=-1)
