"""suite.training: class weights and the keep-the-best-epoch callback, on a real Keras fit."""

from __future__ import annotations

import math

import numpy as np
import pytest

import suite  # noqa: F401
import keras

from suite.training import KeepBest, class_weights


def test_class_weights_balance_the_classes_and_name_a_missing_one():
    weights = class_weights(np.array([0, 0, 0, 1]), 2)
    assert weights == pytest.approx({0: 4 / 6, 1: 2.0})
    with pytest.raises(ValueError, match=r"class id\(s\) \[2\]"):
        class_weights(np.array([0, 1]), 3)


def _fit(scores: list, epochs: int, max_minutes=None, rank=lambda f: f["s"]):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    kernels = []
    figures = iter(scores)

    def score():
        kernels.append(model.get_weights()[0].copy())
        return {"s": next(figures)}

    lines = []
    best = KeepBest(model, score, rank, max_minutes, lines.append)
    model.fit(np.ones((8, 2)), np.full((8, 1), 3.0), epochs=epochs, verbose=0,
              callbacks=[best])
    return model, best, kernels, lines


def test_the_best_epoch_is_kept_and_restored():
    model, best, kernels, lines = _fit([0.2, 0.9, 0.5], 3)
    assert best.best_epoch == 2 and best.best_figures == {"s": 0.9}
    assert [h["epoch"] for h in best.history] == [1, 2, 3] and len(lines) == 3
    assert not np.allclose(model.get_weights()[0], kernels[1])  # trained on after epoch 2
    best.restore()
    np.testing.assert_allclose(model.get_weights()[0], kernels[1])


def test_nan_keeps_the_latest_epoch_and_the_budget_stops_training():
    _, best, _, _ = _fit([0.5, math.nan, math.nan], 3)
    assert best.best_epoch == 3
    _, best, _, lines = _fit([0.1] * 5, 5, max_minutes=0.0)
    assert len(best.history) == 1 and "time budget" in lines[-1]
