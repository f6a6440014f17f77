"""Training of the medical-scans CNNs: a plain ``train()`` and the pipeline's ``fit`` hook.

The input pipeline parses the examples (encoded image bytes), applies the TFT transform graph
(decode, resize) and caches the decoded images; augmentation runs only on training batches,
so the exported model never contains it. Classes are weighted by inverse frequency. After
each epoch the model is scored on the validation split (patients never seen in training):
the weights of the epoch with the best validation AUC are kept. Then the decision is fitted
there (decision.py): the threshold by the configured rule, the refer band, the
out-of-distribution limit, and the calibration a site recalibration starts from; all of
it is recorded in the model's metadata and built into its outputs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras
import numpy as np
import tensorflow as tf

from apps.medical_scans import decision as decisions, evaluation
from apps.medical_scans.config import MedicalConfig
from apps.medical_scans.features import IMAGE, IMAGE_XF, LABEL
from apps.medical_scans.model import augmentation, build_model
from pipelines.trainer import Trained, TrainerInputs
from serving.export import ExportSpec
from suite import distribute
from suite.training import KeepBest, class_weights, tensorboard
from suite.metrics import decision_threshold, roc_auc
from suite.progress import say


@dataclass
class TrainResult:
    """A trained model, its decision threshold and what training measured."""

    model: keras.Model
    threshold: float
    validation: dict  # evaluation.binary_report on the validation split at the threshold
    decision: decisions.Decision  # the threshold, refer band and out-of-distribution check
    rule: dict  # how the threshold was chosen: the rule, its target and margin
    calibration: dict  # decision.fit_calibration on the validation split
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


def _random_blur(images: tf.Tensor, max_sigma: float) -> tf.Tensor:
    """Half of the time, the batch blurred by a Gaussian of sigma U(0, max_sigma) pixels
    (reflected borders)."""
    radius = max(1, math.ceil(3 * max_sigma))
    sigma = tf.random.uniform([], 1e-3, max_sigma)
    taps = tf.exp(-0.5 * tf.square(tf.range(-radius, radius + 1, dtype=tf.float32) / sigma))
    taps /= tf.reduce_sum(taps)
    channels = images.shape[-1]
    padded = tf.pad(images, [[0, 0], [radius, radius], [radius, radius], [0, 0]], "REFLECT")
    rows = tf.tile(tf.reshape(taps, [-1, 1, 1, 1]), [1, 1, channels, 1])
    cols = tf.tile(tf.reshape(taps, [1, -1, 1, 1]), [1, 1, channels, 1])
    blurred = tf.nn.depthwise_conv2d(padded, rows, [1, 1, 1, 1], "VALID")
    blurred = tf.nn.depthwise_conv2d(blurred, cols, [1, 1, 1, 1], "VALID")
    return tf.cond(tf.random.uniform([]) < 0.5, lambda: blurred, lambda: images)


def _random_resolution(images: tf.Tensor, max_factor: float) -> tf.Tensor:
    """Half of the time, the batch down-sampled by U(1, max_factor) and up-sampled back."""
    size = tf.shape(images)[1:3]
    factor = tf.random.uniform([], 1.0, max_factor)
    smaller = tf.maximum(tf.cast(tf.cast(size, tf.float32) / factor, tf.int32), 1)
    lowered = tf.image.resize(tf.image.resize(images, smaller, antialias=True), size)
    return tf.cond(tf.random.uniform([]) < 0.5, lambda: lowered, lambda: images)


def positive_scores(model: keras.Model, dataset: tf.data.Dataset) -> np.ndarray:
    """The model's probability of the positive class (id 1) on every image of ``dataset``."""
    return np.concatenate([model(x, training=False).numpy()[:, 1] for x, _ in dataset])


def pooled_features(model: keras.Model, dataset: tf.data.Dataset | None) -> np.ndarray:
    """The model's pooled features (``decision.POOL``) of every image of ``dataset``."""
    if dataset is None:
        return np.zeros((0, model.get_layer(decisions.POOL).output.shape[-1]))
    features = keras.Model(model.inputs, model.get_layer(decisions.POOL).output)
    return np.concatenate([features(x, training=False).numpy() for x, _ in dataset])


def fit_decision(model: keras.Model, train_ds: tf.data.Dataset,
                 validation_ds: tf.data.Dataset | None, labels: np.ndarray,
                 scores: np.ndarray, config: MedicalConfig
                 ) -> tuple[decisions.Decision, dict, dict]:
    """(decision, rule, calibration) of a trained model, fitted on the validation split
    (``labels`` and the model's positive ``scores`` there): the threshold by
    ``decision.rule`` (0.5 without validation data of both classes), the refer band around
    it, the out-of-distribution limit and the probability calibration."""
    d = config.decision
    rule = {"rule": d.rule, "target": d.target, "margin": d.margin}
    if len(np.unique(labels)) == 2:
        threshold = decision_threshold(labels, scores, d.rule, d.target, d.margin)
    else:
        threshold, rule = 0.5, {"rule": "fixed", "target": 0.5, "margin": 0.0}
    ood = None
    if d.ood_quantile is not None:
        ood = decisions.fit_ood(pooled_features(model, train_ds), _labels(train_ds),
                                pooled_features(model, validation_ds if len(labels) else None),
                                d.ood_quantile, d.ood_shrinkage)
    low, high = decisions.refer_band(threshold, d.refer_band)
    return (decisions.Decision(threshold, low, high, ood), rule,
            decisions.fit_calibration(labels, scores))


def train(train_ds: tf.data.Dataset, validation_ds: tf.data.Dataset | None,
          config: MedicalConfig, *, log=None, log_dir: str | None = None) -> TrainResult:
    """Builds and fits the configured model on (image_xf, label) batches; keeps the epoch
    with the best validation AUC and fits the decision on the validation split
    (``fit_decision``). ``log`` (a print-like function) gets one line per epoch."""
    config = config.check()
    cfg = config.train
    plan = distribute.plan(cfg)
    keras.utils.set_random_seed(cfg.seed)
    labels = _labels(train_ds)
    weights = class_weights(labels, len(config.data.classes)) if cfg.class_weights else None
    augment = augmentation(config)

    def augment_batch(x, y):
        if cfg.gamma:
            x = _random_gamma(x, cfg.gamma)
        if cfg.blur:
            x = _random_blur(x, cfg.blur)
        if cfg.downscale > 1:
            x = _random_resolution(x, cfg.downscale)
        return (augment(x, training=True) if augment.layers else x), y

    fit_ds = (plan.full_batches(train_ds.unbatch()
                                .shuffle(4096, seed=cfg.seed, reshuffle_each_iteration=True)
                                .batch(plan.batch_size), len(labels))
              .map(augment_batch, num_parallel_calls=tf.data.AUTOTUNE)
              .prefetch(tf.data.AUTOTUNE))
    validation_labels = _labels(validation_ds) if validation_ds is not None else np.zeros(0)
    if validation_ds is not None and len(validation_labels) == 0:
        validation_ds = None
    steps = math.ceil(len(labels) / plan.batch_size) * cfg.epochs
    with plan.scope():
        model = build_model(config)
        schedule = keras.optimizers.schedules.CosineDecay(plan.learning_rate, max(1, steps))
        # The pooled features are served too (the out-of-distribution check).
        plan.compile(model, float32=(model.get_layer(decisions.POOL),),
                     optimizer=keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay),
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
    validation_scores = (positive_scores(model, validation_ds) if validation_ds is not None
                         else np.zeros(0))
    decision, rule, calibration = fit_decision(model, train_ds, validation_ds,
                                               validation_labels, validation_scores, config)
    report = {}
    if validation_ds is not None:
        report = evaluation.binary_report(validation_labels, validation_scores,
                                          decision.threshold)
    return TrainResult(model=model, threshold=decision.threshold, validation=report,
                       decision=decision, rule=rule, calibration=calibration,
                       history=best.history, best_epoch=best.best_epoch,
                       train_seconds=train_seconds, train_images=len(labels))


def export_spec(config: MedicalConfig, result: TrainResult) -> ExportSpec:
    """What the served model takes (encoded image bytes) and returns
    (``decision.served_outputs``)."""
    return ExportSpec(serving_features=(IMAGE,), model_inputs=(IMAGE_XF,),
                      postprocess=decisions.served_outputs(config.data.classes,
                                                           result.decision),
                      feature_layer=decisions.POOL)


def export_metadata(config: MedicalConfig, result: TrainResult) -> dict:
    """What the export records beside the model: the decision and how it was chosen, the
    validation calibration a site recalibration starts from, and the training history."""
    return {**decisions.metadata(result.decision, result.rule),
            "positive_class": config.data.classes[1], "calibration": result.calibration,
            "site_calibration": None, "validation": result.validation,
            "best_epoch": result.best_epoch, "history": result.history}


def fit(inputs: TrainerInputs, config: MedicalConfig) -> Trained:
    """The pipeline's hook: transformed train / validation images -> train() -> the served
    form with the threshold chosen on validation. The Trainer's eval split is the validation
    split (the pipeline's eval split is the Evaluator's alone). The plan comes first: a
    multi-worker strategy must exist before TensorFlow runs an op."""
    batch = distribute.plan(config.train).batch_size
    result = train(inputs.dataset(inputs.train_files, batch, IMAGE_XF, LABEL),
                   inputs.dataset(inputs.eval_files, batch, IMAGE_XF, LABEL), config,
                   log=say, log_dir=inputs.log_dir)
    say(f"decision threshold {result.threshold:.4f} by {decisions.describe_rule(result.rule)} "
        "(validation: " + ", ".join(f"{k} {result.validation[k]:.4f}" for k in
                                    ("auc", "sensitivity", "specificity")
                                    if k in result.validation) + ")")
    return Trained(result.model, export_spec(config, result),
                   export_metadata(config, result))

