"""What every app's training loop shares: class weights for imbalance, a callback that
keeps the best epoch on the validation split and stops when the time budget is spent, and
the TensorBoard logs of a run."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras


def class_weights(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    """Inverse-frequency weights, normalised so that the mean weight per example is 1."""
    counts = np.bincount(labels.astype(int), minlength=n_classes).astype(float)
    if (counts == 0).any():
        missing = [i for i in range(n_classes) if counts[i] == 0]
        raise ValueError(f"training split: no examples of class id(s) {missing}")
    return {i: float(len(labels) / (n_classes * counts[i])) for i in range(n_classes)}


class KeepBest(keras.callbacks.Callback):
    """After each epoch: scores the validation data with ``score`` (a dict of figures),
    keeps the weights of ``model`` (the trained model, or the part of it that is exported)
    whose ``rank(figures)`` is highest (ties: the later epoch), logs one line, and stops
    training when ``max_minutes`` are spent. Without a ``score``, or when the rank is NaN
    (e.g. an AUC over one class), the latest epoch is kept."""

    def __init__(self, model: keras.Model, score: Callable[[], dict] | None,
                 rank: Callable[[dict], Any], max_minutes: float | None,
                 log: Callable[[str], None] | None = None):
        super().__init__()
        self.core, self.score, self.rank = model, score, rank
        self.max_seconds = None if max_minutes is None else max_minutes * 60.0
        self.log = log
        self.history: list[dict] = []
        self.best, self.best_epoch, self.best_weights, self.best_figures = None, 0, None, {}
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        figures = self.score() if self.score else {}
        if logs is not None:  # so that callbacks after this one (TensorBoard) see them
            logs.update(figures)
        elapsed = time.perf_counter() - self.start
        entry = {"epoch": epoch + 1, "loss": float((logs or {}).get("loss", math.nan)),
                 **figures, "seconds": elapsed}
        self.history.append(entry)
        value = self.rank(figures) if figures else None
        if value is None or value != value or self.best is None or value >= self.best:
            self.best = None if value != value else value  # NaN: kept, but never the bar
            self.best_epoch, self.best_weights = epoch + 1, self.core.get_weights()
            self.best_figures = figures
        if self.log:
            shown = "  ".join(f"{k.replace('_', ' ')} {v:.4f}" for k, v in figures.items())
            self.log(f"epoch {epoch + 1}: loss {entry['loss']:.4f}  {shown}  ({elapsed:.0f} s)")
        if self.max_seconds is not None and elapsed >= self.max_seconds:
            if self.log:
                self.log(f"time budget of {self.max_seconds / 60:.1f} min reached")
            self.model.stop_training = True

    def restore(self) -> None:
        """Puts the kept epoch's weights back into the model."""
        if self.best_weights is not None:
            self.core.set_weights(self.best_weights)


def tensorboard(log_dir: str | None) -> list[keras.callbacks.Callback]:
    """The TensorBoard callback of a training run (none without ``log_dir``): per-epoch
    scalars (the loss, the compiled metrics and, placed after ``KeepBest``, its validation
    figures) and the model graph, under ``log_dir``."""
    return [keras.callbacks.TensorBoard(log_dir, write_graph=True)] if log_dir else []
