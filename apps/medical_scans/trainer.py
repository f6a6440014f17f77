"""Training of the medical-scans CNNs: a plain ``train()`` and the pipeline's ``fit`` hook.

The input pipeline parses the examples (encoded image bytes), applies the TFT transform graph
(decode, resize) and caches the decoded images; augmentation runs only on training batches,
so the exported model never contains it. Classes are weighted by inverse frequency. After
each epoch the model is scored on the validation split (patients never seen in training):
the weights of the epoch with the best validation AUC are kept, and the decision threshold
is chosen there (Youden's J), recorded in the model's metadata and built into its outputs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras
import numpy as np
import tensorflow as tf

from apps.medical_scans import evaluation
from apps.medical_scans.config import MedicalConfig
from apps.medical_scans.features import IMAGE, IMAGE_XF, LABEL
from apps.medical_scans.model import augmentation, build_model
from pipelines.trainer import Trained, TrainerInputs
from serving.export import ExportSpec
from suite.distribute import strategy as pick_strategy
from suite.metrics import roc_auc
from suite.progress import say

_EPS = 1e-7


@dataclass
class TrainResult:
    """A trained model, its decision threshold and what training measured."""

    model: keras.Model
    threshold: float
    validation: dict  # evaluation.binary_report on the validation split at the threshold
    history: list[dict]  # per epoch: loss, validation AUC, seconds
    best_epoch: int
    train_seconds: float
    train_images: int


def _labels(dataset: tf.data.Dataset) -> np.ndarray:
    return np.concatenate([y.numpy() for _, y in dataset]) if dataset else np.zeros(0)


def class_weights(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    """Inverse-frequency weights, normalised so that the mean weight per example is 1."""
    counts = np.bincount(labels.astype(int), minlength=n_classes).astype(float)
    if (counts == 0).any():
        missing = [i for i in range(n_classes) if counts[i] == 0]
        raise ValueError(f"training split: no examples of class id(s) {missing}")
    return {i: float(len(labels) / (n_classes * counts[i])) for i in range(n_classes)}


def _random_gamma(images: tf.Tensor, amount: float) -> tf.Tensor:
    """Per-image exposure curve: images ** exp(U(-amount, amount)), images in [0, 1]."""
    batch = tf.shape(images)[0]
    gamma = tf.exp(tf.random.uniform([batch, 1, 1, 1], -amount, amount))
    return tf.pow(tf.clip_by_value(images, 0.0, 1.0), gamma)


def positive_scores(model: keras.Model, dataset: tf.data.Dataset) -> np.ndarray:
    """The model's probability of the positive class (id 1) on every image of ``dataset``."""
    return np.concatenate([model(x, training=False).numpy()[:, 1] for x, _ in dataset])


class _BestValidationAUC(keras.callbacks.Callback):
    """Scores the validation split after each epoch, keeps the best weights and stops
    training when the time budget is spent."""

    def __init__(self, validation: tf.data.Dataset | None, labels: np.ndarray,
                 max_minutes: float | None, log=None):
        super().__init__()
        self.validation, self.labels = validation, labels
        self.max_seconds = None if max_minutes is None else max_minutes * 60.0
        self.log = log
        self.history: list[dict] = []
        self.best_auc, self.best_epoch, self.best_weights = -math.inf, -1, None
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        auc = float("nan")
        if self.validation is not None:
            auc = roc_auc(self.labels, positive_scores(self.model, self.validation))
        elapsed = time.perf_counter() - self.start
        self.history.append({"epoch": epoch + 1, "loss": float((logs or {}).get("loss", 0.0)),
                             "validation_auc": auc, "seconds": elapsed})
        # Without validation data (or with one class only), the last epoch is kept.
        if math.isnan(auc) or auc >= self.best_auc:
            self.best_auc = auc if not math.isnan(auc) else self.best_auc
            self.best_epoch, self.best_weights = epoch + 1, self.model.get_weights()
        if self.log:
            self.log(f"epoch {epoch + 1}: loss {self.history[-1]['loss']:.4f}  validation AUC "
                     f"{auc:.4f}  ({elapsed:.0f} s)")
        if self.max_seconds is not None and elapsed >= self.max_seconds:
            if self.log:
                self.log(f"time budget of {self.max_seconds / 60:.0f} min reached")
            self.model.stop_training = True


def train(train_ds: tf.data.Dataset, validation_ds: tf.data.Dataset | None,
          config: MedicalConfig, *, log=None) -> TrainResult:
    """Builds and fits the configured model on (image_xf, label) batches; keeps the epoch
    with the best validation AUC and chooses the decision threshold on the validation split.
    ``log`` (a print-like function) gets one line per epoch."""
    config = config.check()
    cfg = config.train
    keras.utils.set_random_seed(cfg.seed)
    labels = _labels(train_ds)
    weights = class_weights(labels, len(config.data.classes)) if cfg.class_weights else None
    augment = augmentation(config)

    def augment_batch(x, y):
        if cfg.gamma:
            x = _random_gamma(x, cfg.gamma)
        return (augment(x, training=True) if augment.layers else x), y

    fit_ds = (train_ds.unbatch().shuffle(4096, seed=cfg.seed, reshuffle_each_iteration=True)
              .batch(cfg.batch_size)
              .map(augment_batch, num_parallel_calls=tf.data.AUTOTUNE)
              .prefetch(tf.data.AUTOTUNE))
    validation_labels = _labels(validation_ds) if validation_ds is not None else np.zeros(0)
    if validation_ds is not None and len(validation_labels) == 0:
        validation_ds = None
    steps = math.ceil(len(labels) / cfg.batch_size) * cfg.epochs
    with pick_strategy().scope():
        model = build_model(config)
        schedule = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, max(1, steps))
        model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    best = _BestValidationAUC(validation_ds, validation_labels, cfg.max_minutes, log)
    start = time.perf_counter()
    model.fit(fit_ds, epochs=cfg.epochs, class_weight=weights, verbose=0, callbacks=[best])
    train_seconds = time.perf_counter() - start
    if best.best_weights is not None:
        model.set_weights(best.best_weights)
    if validation_ds is not None:
        scores = positive_scores(model, validation_ds)
        threshold = evaluation.choose_threshold(validation_labels, scores)
        report = evaluation.binary_report(validation_labels, scores, threshold)
    else:
        threshold, report = 0.5, {}
    return TrainResult(model=model, threshold=threshold, validation=report,
                       history=best.history, best_epoch=best.best_epoch,
                       train_seconds=train_seconds, train_images=len(labels))


def thresholded_outputs(class_names: Sequence[str], threshold: float):
    """Serving outputs of the binary classifier with its decision threshold built in:
    probabilities per class, the decided class id and name, the decided class's probability
    (``scores``), the threshold itself, and ``decision_score``: the positive probability
    moved on the logit scale so that 0.5 is the threshold (same ranking, so the same AUC;
    TFMA's thresholded metrics read the decision at 0.5)."""
    names = tf.constant(list(class_names))
    logit_t = math.log(threshold + _EPS) - math.log1p(-threshold + _EPS)

    def postprocess(probabilities: tf.Tensor) -> dict[str, tf.Tensor]:
        positive = tf.clip_by_value(probabilities[:, 1], _EPS, 1.0 - _EPS)
        class_ids = tf.cast(positive >= threshold, tf.int64)
        logit = tf.math.log(positive) - tf.math.log1p(-positive)
        return {
            "probabilities": probabilities,
            "class_ids": class_ids,
            "classes": tf.gather(names, class_ids),
            "scores": tf.gather(probabilities, class_ids, batch_dims=1),
            "threshold": tf.fill(tf.shape(positive), tf.constant(threshold, tf.float32)),
            "decision_score": tf.sigmoid(logit - logit_t),
        }

    return postprocess


def export_spec(config: MedicalConfig, threshold: float) -> ExportSpec:
    """What the served model takes (encoded image bytes) and returns."""
    return ExportSpec(serving_features=(IMAGE,), model_inputs=(IMAGE_XF,),
                      postprocess=thresholded_outputs(config.data.classes, threshold))


def export_metadata(config: MedicalConfig, result: TrainResult) -> dict:
    """What the export records beside the model: the threshold and how it was chosen."""
    return {"threshold": result.threshold, "threshold_rule": "youden_j_on_validation",
            "positive_class": config.data.classes[1],
            "validation": result.validation, "best_epoch": result.best_epoch,
            "history": result.history}


def fit(inputs: TrainerInputs, config: MedicalConfig) -> Trained:
    """The pipeline's hook: transformed train / validation images -> train() -> the served
    form with the threshold chosen on validation. The Trainer's eval split is the validation
    split (the pipeline's eval split is the Evaluator's alone)."""
    batch = config.train.batch_size
    result = train(inputs.dataset(inputs.train_files, batch, IMAGE_XF, LABEL),
                   inputs.dataset(inputs.eval_files, batch, IMAGE_XF, LABEL), config,
                   log=say)
    say(f"decision threshold {result.threshold:.4f} (validation: "
        + ", ".join(f"{k} {result.validation[k]:.4f}" for k in
                    ("auc", "sensitivity", "specificity") if k in result.validation) + ")")
    return Trained(result.model, export_spec(config, result.threshold),
                   export_metadata(config, result))
