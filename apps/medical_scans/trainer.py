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
from suite.training import KeepBest, class_weights, tensorboard
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


def _random_gamma(images: tf.Tensor, amount: float) -> tf.Tensor:
    """Per-image exposure curve: images ** exp(U(-amount, amount)), images in [0, 1]."""
    batch = tf.shape(images)[0]
    gamma = tf.exp(tf.random.uniform([batch, 1, 1, 1], -amount, amount))
    return tf.pow(tf.clip_by_value(images, 0.0, 1.0), gamma)


def positive_scores(model: keras.Model, dataset: tf.data.Dataset) -> np.ndarray:
    """The model's probability of the positive class (id 1) on every image of ``dataset``."""
    return np.concatenate([model(x, training=False).numpy()[:, 1] for x, _ in dataset])


def train(train_ds: tf.data.Dataset, validation_ds: tf.data.Dataset | None,
          config: MedicalConfig, *, log=None, log_dir: str | None = None) -> TrainResult:
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

    def score() -> dict:
        return {"validation_auc": roc_auc(validation_labels,
                                          positive_scores(model, validation_ds))}

    best = KeepBest(model, score if validation_ds is not None else None,
                    lambda f: f["validation_auc"], cfg.max_minutes, log)
    start = time.perf_counter()
    model.fit(fit_ds, epochs=cfg.epochs, class_weight=weights, verbose=0,
              callbacks=[best, *tensorboard(log_dir)])
    train_seconds = time.perf_counter() - start
    best.restore()
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
                   log=say, log_dir=inputs.log_dir)
    say(f"decision threshold {result.threshold:.4f} (validation: "
        + ", ".join(f"{k} {result.validation[k]:.4f}" for k in
                    ("auc", "sensitivity", "specificity") if k in result.validation) + ")")
    return Trained(result.model, export_spec(config, result.threshold),
                   export_metadata(config, result))
