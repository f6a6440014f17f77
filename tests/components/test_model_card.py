"""The model card's figures: bootstrap intervals, per-slice grouping, limitations and the
placeholders for what a person must fill in; the numpy statistics it resamples. (The card of
a real pipeline run is checked against TFMA by every app's pipeline test.)"""

from __future__ import annotations

import json

import numpy as np
import pytest

from components import model_card
from suite import metrics


def test_bootstrap_interval_of_an_accuracy_has_the_binomial_width():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 1000)
    right = rng.random(1000) < 0.8
    predicted = np.where(right, labels, (labels + 1) % 3)
    probabilities = np.eye(3)[predicted]
    low, high = model_card.bootstrap_interval(metrics.accuracy, labels, probabilities,
                                              samples=400)
    value = metrics.accuracy(labels, probabilities)
    assert low < value < high
    # 1.96 * sqrt(0.8 * 0.2 / 1000) = 0.0248 on each side.
    assert 0.035 < high - low < 0.065


def test_intervals_per_slice_follow_the_slice_feature_and_skip_undefined_values():
    labels = np.array([0, 1] * 50)
    scores = np.where(labels == 1, 0.9, 0.1)
    scores[:10] = 0.5  # a few ties
    site = ["a"] * 60 + ["b"] * 40
    tfma = {"overall": 0.95, "site=a": 0.9, "site=b": float("nan")}
    out = model_card.confidence_intervals(metrics.roc_auc, labels, scores, {"site": site},
                                          tfma, samples=100)
    assert set(out) == {"overall", "site=a"}  # site=b: TFMA has no finite value
    assert out["site=a"]["examples"] == 60 and out["overall"]["examples"] == 100
    assert out["overall"]["value"] == 0.95  # the point value is TFMA's


def test_card_lists_weak_slices_and_placeholders_and_renders_markdown():
    card = model_card.build_card(
        app="speech", model_name="speech", version="7", pushed_dir="/models/speech/7",
        code_version="0.1.0+abc", config={"card": {"owner": "line 4 QA", "max_slice_gap": 0.05},
                                          "model": {"kind": "dscnn"}, "data": {"format": "fsdd"}},
        spec={"intended_use": "keywords", "not_for": "speaker identification",
              "limitations": ["declared"]},
        metadata={}, metrics={"overall": {"acc": 0.9}, "speaker=a": {"acc": 0.8},
                              "speaker=b": {"acc": 0.88}},
        headline="acc", intervals={"overall": {"value": 0.9, "examples": 10,
                                               "ci95": [0.8, 0.95]}},
        interval_note="bootstrap", data_summary={"counts": {"train": 5, "eval": 10}},
        gates=[])
    assert card["owner"] == "line 4 QA"
    assert card["licence"].startswith(model_card.PLACEHOLDER)
    assert card["limitations"][0] == "declared"
    assert [t for t in card["limitations"] if "speaker=" in t] == [
        "slice speaker=a: acc 0.8000, more than 0.05 below the overall 0.9000"]
    text = model_card.card_markdown(card)
    assert "speaker identification" in text
    assert "| overall | 0.9000 | 0.8000 to 0.9500 | 10 |" in text
    assert "Training cost\n\nnot measured" in text
    json.dumps(card)  # JSON-ready


@pytest.mark.parametrize("statistic, expected", [
    (metrics.sensitivity, 2 / 3), (metrics.specificity, 1 / 2)])
def test_thresholded_statistics(statistic, expected):
    labels = np.array([1, 1, 1, 0, 0])
    scores = np.array([0.9, 0.6, 0.2, 0.7, 0.1])
    assert statistic(labels, scores) == pytest.approx(expected)
