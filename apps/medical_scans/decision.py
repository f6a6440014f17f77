"""How a medical-scans model decides, and how a site recalibrates it.

- **Threshold:** chosen on the validation split by the configured rule
  (``suite.metrics.decision_threshold``: Youden's J, a target sensitivity with a margin, or
  a target specificity).
- **Refer band:** images whose positive probability lies within ``decision.refer_band``
  logits of the threshold are referred to a reader as unsure.
- **Out of distribution:** the squared Mahalanobis distance of the model's pooled features
  to the training images' (class means, one shared covariance; ``blocks.mahalanobis``);
  images farther than the ``decision.ood_quantile`` of the validation images' distances
  (``distance_limit``) are referred as unlike the training data (another modality, a
  photo, a blank image).
- **Site calibration:** the positive probability is mapped to a calibrated posterior at
  the validation split's prevalence (a logistic fit on the validation split, Platt 1999);
  on a site's unlabelled scans the EM procedure of Saerens, Latinne & Decaestecker (2002)
  estimates the site's prevalence, and the threshold moves to where the posterior at that
  prevalence is 0.5 (the fewest expected errors there). With labelled site scans the
  configured rule is applied to them instead.

The threshold, the band's edges and the distance limit are variables of the served model,
so ``calibrate`` writes a new version of the same graph with new values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from blocks.mahalanobis import Gaussian, gaussian

POOL = "pool"  # the model's pooled features (model.py): what the distance is measured on
REFER_UNCERTAIN = "REFER_UNCERTAIN"
REFER_UNLIKE = "REFER_OUT_OF_DISTRIBUTION"
_EPS = 1e-7


def logit(p):
    """log(p / (1 - p)), with p kept inside (0, 1)."""
    p = np.clip(np.asarray(p, np.float64), _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def refer_band(threshold: float, half_width: float) -> tuple[float, float]:
    """The band's edges on the positive probability: ``half_width`` logits either side of
    ``threshold`` (both equal to it when the width is 0)."""
    if not half_width:
        return float(threshold), float(threshold)
    centre = float(logit(threshold))
    return float(sigmoid(centre - half_width)), float(sigmoid(centre + half_width))


@dataclass(frozen=True)
class OodModel:
    """The training images' pooled features: class means and one shared Gaussian of the
    deviations from them; ``limit`` is the distance beyond which an image is referred."""

    means: np.ndarray  # [classes, C]
    gaussian: Gaussian  # of feature - its class mean
    limit: float

    def distance(self, features: np.ndarray) -> np.ndarray:
        """The squared Mahalanobis distance [n] to the nearest class mean."""
        f = np.asarray(features, np.float64)[:, None, :] - self.means[None]
        white = (f / self.gaussian.std) @ self.gaussian.whitening
        return np.min(np.sum(white * white, axis=-1), axis=1)


def fit_ood(features: np.ndarray, labels: np.ndarray, validation_features: np.ndarray,
            quantile: float, shrinkage: float) -> OodModel:
    """Fits the class means and shared Gaussian on the training images' pooled features;
    the limit is the ``quantile`` of the validation images' distances (the training ones
    when there is no validation split)."""
    features = np.asarray(features, np.float64)
    labels = np.asarray(labels).astype(int).ravel()
    classes = np.unique(labels)
    means = np.stack([features[labels == c].mean(axis=0) for c in classes])
    deviations = features - means[np.searchsorted(classes, labels)]
    g = gaussian(deviations, shrinkage)
    g = Gaussian(np.zeros_like(g.mean), g.std, g.whitening)  # deviations: mean is 0
    model = OodModel(means, g, math.inf)
    reference = validation_features if len(validation_features) else features
    return OodModel(means, g, distance_limit(model.distance(reference), quantile))


def distance_limit(distances: np.ndarray, quantile: float) -> float:
    """The ``quantile`` of in-distribution distances: the larger of the empirical quantile
    and that of a log-normal fitted to them, which a few hundred validation images pin
    down as well and a few dozen far better (their largest value is no 99.5 % quantile)."""
    from scipy.stats import norm  # noqa: PLC0415

    distances = np.asarray(distances, np.float64)
    logs = np.log(np.maximum(distances, 1e-12))
    fitted = float(np.exp(logs.mean() + norm.ppf(quantile) * logs.std(ddof=1))) \
        if len(distances) > 2 else math.inf
    return max(float(np.quantile(distances, quantile)), fitted)


@dataclass(frozen=True)
class Decision:
    """What the served model decides with: every threshold on the positive probability, and
    the out-of-distribution model (None: no check)."""

    threshold: float
    refer_low: float
    refer_high: float
    ood: OodModel | None

    def values(self) -> dict[str, float]:
        """The served variables' values, by their names in the served graph (a site
        calibration sets the first three)."""
        return {"decision_threshold": self.threshold, "refer_low": self.refer_low,
                "refer_high": self.refer_high,
                "ood_limit": self.ood.limit if self.ood else math.inf}


def served_outputs(class_names: Sequence[str], decision: Decision):
    """Serving outputs ``postprocess(probabilities, pooled features)``: probabilities per
    class, the decided class id and name, the decided class's probability (``scores``), the
    threshold, ``decision_score`` (the positive probability moved on the logit scale so
    that 0.5 is the threshold: the same ranking, so the same AUC; TFMA reads the decision
    at 0.5), ``ood_score`` (the squared Mahalanobis distance; 0 without the check),
    ``refer`` (1 when the image is referred: unsure or unlike the training data) and
    ``decision`` (the class name, REFER_UNCERTAIN or REFER_OUT_OF_DISTRIBUTION). The
    thresholds are the variables of ``Decision.values``."""
    import tensorflow as tf  # noqa: PLC0415

    names = tf.constant(list(class_names))
    variables = {name: tf.Variable(value, dtype=tf.float32, trainable=False, name=name)
                 for name, value in decision.values().items()}
    ood = decision.ood
    if ood is not None:
        means = tf.constant(ood.means, tf.float32)
        std = tf.constant(ood.gaussian.std, tf.float32)
        whitening = tf.constant(ood.gaussian.whitening, tf.float32)

    def postprocess(probabilities, features):
        threshold = variables["decision_threshold"]
        positive = tf.clip_by_value(probabilities[:, 1], _EPS, 1.0 - _EPS)
        class_ids = tf.cast(positive >= threshold, tf.int64)
        logit_p = tf.math.log(positive) - tf.math.log1p(-positive)
        t = tf.clip_by_value(threshold, _EPS, 1.0 - _EPS)
        if ood is None:
            distance = tf.zeros_like(positive)
        else:
            deviations = (features[:, None, :] - means[None]) / std
            white = tf.einsum("bkc,cd->bkd", deviations, whitening)
            distance = tf.reduce_min(tf.reduce_sum(white * white, axis=-1), axis=1)
        unlike = distance > variables["ood_limit"]
        unsure = (positive >= variables["refer_low"]) & (positive < variables["refer_high"])
        decided = tf.gather(names, class_ids)
        return {
            "probabilities": probabilities,
            "class_ids": class_ids,
            "classes": decided,
            "scores": tf.gather(probabilities, class_ids, batch_dims=1),
            "threshold": tf.fill(tf.shape(positive), threshold),
            "decision_score": tf.sigmoid(logit_p - (tf.math.log(t) - tf.math.log1p(-t))),
            "ood_score": distance,
            "refer": tf.cast(unlike | unsure, tf.int64),
            "decision": tf.where(unlike, REFER_UNLIKE,
                                 tf.where(unsure, REFER_UNCERTAIN, decided)),
        }

    return postprocess


def describe_rule(rule: dict) -> str:
    """The threshold rule of an export's metadata in words, e.g. "sensitivity >= 0.95 +
    0.02 on the validation split"."""
    name, on = rule.get("rule"), rule.get("on", "the validation split")
    if name == "youden":
        return f"Youden's J on {on}"
    if name in ("sensitivity", "specificity"):
        margin = f" + {rule['margin']:g}" if rule.get("margin") else ""
        return f"{name} >= {rule['target']:g}{margin} on {on}"
    if name == "site_prevalence":
        return (f"the fewest expected errors at the site's prevalence "
                f"{rule['prevalence']:.3f}, estimated on {on}")
    return f"a fixed {rule.get('target', 0.5)} (no validation data of both classes)"


def details(refer: Sequence[float], ood_limit: float | None) -> list[str]:
    """The refer band and the out-of-distribution limit in words (for the model card)."""
    low, high = refer
    return [f"Images whose positive probability is in [{low:.4f}, {high:.4f}) are referred "
            "to a reader as unsure." if high > low else "No refer band.",
            f"Images whose out-of-distribution score (squared Mahalanobis distance of the "
            f"model's features to the training images') exceeds {ood_limit:.1f} are referred "
            "as unlike the training data." if ood_limit is not None else
            "No out-of-distribution check."]


def metadata(decision: Decision, rule: dict) -> dict:
    """What the export records about the decision (JSON): the thresholds, the rule that
    chose the threshold (``decision_rule``; in words as ``threshold_rule``), the refer band,
    the out-of-distribution limit, and those in words for the model card
    (``decision_details``)."""
    band = [decision.refer_low, decision.refer_high]
    limit = decision.ood.limit if decision.ood else None
    return {"threshold": decision.threshold, "threshold_rule": describe_rule(rule),
            "decision_rule": rule, "refer_band": band, "ood_limit": limit,
            "decision_details": details(band, limit)}


# --------------------------------------------------------------------------------------
# Site calibration


def fit_calibration(labels: np.ndarray, positive: np.ndarray) -> dict:
    """The logistic map logit(posterior) = a * logit(p) + b fitted on labelled scores (the
    validation split), and the prevalence it is calibrated at."""
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415

    labels = np.asarray(labels).astype(int).ravel()
    if len(np.unique(labels)) < 2:
        return {"a": 1.0, "b": 0.0, "prevalence": float(labels.mean()) if len(labels) else 0.5}
    fit = LogisticRegression(C=1e4, max_iter=1000).fit(logit(positive)[:, None], labels)
    return {"a": float(fit.coef_[0, 0]), "b": float(fit.intercept_[0]),
            "prevalence": float(labels.mean())}


def posterior(positive: np.ndarray, calibration: dict) -> np.ndarray:
    """The calibrated posterior of the positive class at the calibration's prevalence."""
    return sigmoid(calibration["a"] * logit(positive) + calibration["b"])


def em_prevalence(posteriors: np.ndarray, prior: float, *, iterations: int = 1000,
                  tolerance: float = 1e-8) -> float:
    """Saerens et al. (2002): the prevalence of the positive class among unlabelled
    examples whose ``posteriors`` were calibrated at prevalence ``prior``: re-weight each
    posterior by the ratio of the new prior to the old, average, repeat."""
    p = np.clip(np.asarray(posteriors, np.float64).ravel(), _EPS, 1.0 - _EPS)
    prior = float(np.clip(prior, _EPS, 1.0 - _EPS))
    estimate = prior
    for _ in range(iterations):
        up, down = estimate / prior * p, (1.0 - estimate) / (1.0 - prior) * (1.0 - p)
        new = float(np.mean(up / (up + down)))
        if abs(new - estimate) < tolerance:
            return new
        estimate = new
    return estimate


def prevalence_threshold(calibration: dict, prevalence: float) -> float:
    """The threshold on the positive probability where the calibrated posterior, moved to
    ``prevalence``, is 0.5: the decision with the fewest expected errors there."""
    shift = float(logit(prevalence) - logit(calibration["prevalence"]))
    if not calibration["a"] > 0:
        raise ValueError("the validation calibration does not rank positives higher (slope "
                         f"{calibration['a']:.3g}); a prevalence cannot move the threshold")
    return float(sigmoid(-(calibration["b"] + shift) / calibration["a"]))
