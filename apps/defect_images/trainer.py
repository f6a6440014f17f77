"""Training of the defect-images models: plain ``train_classifier`` / ``train_anomaly``
functions (``train`` picks by mode) and the pipeline's ``fit`` hook.

The input pipeline parses the examples (encoded image bytes), applies the TFT transform graph
(decode, resize) and caches the decoded images; augmentation (random flips, 90-degree
rotations, shifts, exposure) runs only on training batches, so the exported model never
contains it.

Classify mode: classes weighted by inverse frequency; after each epoch the model is scored on
the validation split and the weights of the best epoch (accuracy, then loss) are kept.

Anomaly mode (the training split holds good parts only):
- "features": a small CNN learns a self-supervised pretext task on the good parts (name the
  synthetic alteration of an image, pretext.py); then two Gaussians of its features over
  the good parts (seen in every orientation ``anomaly.invariance`` allows): of the local
  features at every position (the squared Mahalanobis distance per position is the anomaly
  map) and of the image's texture statistics (mean and standard deviation per channel);
- "autoencoder": a convolutional autoencoder fit to the good parts (squared error), the best
  epoch on the validation good parts kept; the squared reconstruction error is the map.
Each term is normalised by the validation good parts (median, spread); the score combines
them (``anomaly.combine``) and gets its threshold on the validation split: Youden's J (recall
on defects minus false-alarm rate) where validation defects exist, else the target
false-alarm rate on the validation good parts (``anomaly.threshold_rule``); every rule's
threshold is recorded with the model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras
import numpy as np
import tensorflow as tf

from apps.defect_images import evaluation, model as models
from apps.defect_images.config import DefectConfig, TrainConfig
from apps.defect_images.features import (
    ANOMALY_CLASSES, DECISION_SCORE, IMAGE, IMAGE_XF, IS_DEFECT, LABEL, SCORE, THRESHOLD)
from pipelines.trainer import Trained, TrainerInputs
from blocks.mahalanobis import Gaussian, gaussian, gaussian_from_moments
from serving.export import ExportSpec
from suite import distribute
from suite.training import KeepBest, class_weights, tensorboard
from suite.progress import say
from suite.metrics import decision_threshold, roc_auc

Log = Callable[[str], None] | None


@dataclass
class ClassifyResult:
    """A trained classifier and what training measured."""

    model: keras.Model
    validation: dict  # evaluation.classification_report on the validation split
    history: list[dict]  # per epoch: loss, validation accuracy and loss, seconds
    best_epoch: int
    train_seconds: float
    train_images: int


@dataclass
class AnomalyResult:
    """A trained anomaly model, its decision threshold and what training measured."""

    model: keras.Model
    method: str
    threshold: float
    scale: float  # score units per logit unit (z = (score - threshold) / scale)
    rule: str  # the rule that chose the threshold: "youden" or "false_alarm"
    thresholds: dict  # every rule's threshold on the validation split
    validation: dict  # evaluation.detection_report on the validation split
    # The anomaly-map value that 99 % of the validation good parts' pixels stay below: the
    # heat an explanation shows and measures is the map's excess over it.
    map_reference: float
    map_level: float  # the map value whose smoothed peak would meet the threshold
    norms: dict  # term -> (median, spread) of the validation good parts
    train_seconds: float
    train_images: int
    history: list[dict] = field(default_factory=list)


# --------------------------------------------------------------------------------------
# Data


def _arrays(dataset: tf.data.Dataset | None) -> tuple[np.ndarray, np.ndarray]:
    if dataset is None:
        return np.zeros((0,)), np.zeros((0,), np.int64)
    xs, ys = [], []
    for x, y in dataset:
        xs.append(x.numpy())
        ys.append(y.numpy())
    if not xs:
        return np.zeros((0,)), np.zeros((0,), np.int64)
    return np.concatenate(xs), np.concatenate(ys)


def augment_image(image: tf.Tensor, cfg: TrainConfig) -> tf.Tensor:
    """One decoded image [H, W, C] (square), randomly flipped, turned by a multiple of 90
    degrees and given an exposure curve, as configured."""
    if cfg.flips:
        image = tf.image.random_flip_left_right(image)
        image = tf.image.random_flip_up_down(image)
    if cfg.rot90:
        image = tf.image.rot90(image, tf.random.uniform([], 0, 4, dtype=tf.int32))
    if cfg.gamma:
        gamma = tf.exp(tf.random.uniform([], -cfg.gamma, cfg.gamma))
        image = tf.pow(tf.clip_by_value(image, 0.0, 1.0), gamma)
    return image


def training_batches(images: np.ndarray, labels: np.ndarray, cfg: TrainConfig,
                     batch_size: int | None = None) -> tf.data.Dataset:
    """Shuffled, augmented (image, label) batches (of ``batch_size``, by default
    ``cfg.batch_size``) of one epoch."""
    translate = (keras.layers.RandomTranslation(cfg.translation, cfg.translation,
                                                fill_mode="reflect", seed=cfg.seed)
                 if cfg.translation else None)

    def shift(x, y):
        return (translate(x, training=True) if translate is not None else x), y

    return (tf.data.Dataset.from_tensor_slices((images, labels))
            .shuffle(len(images), seed=cfg.seed, reshuffle_each_iteration=True)
            .map(lambda x, y: (augment_image(x, cfg), y), num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size or cfg.batch_size)
            .map(shift, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def orientations(images: np.ndarray, invariance: str) -> list[np.ndarray]:
    """``images`` [N, H, W, C] in every orientation ``invariance`` allows: "none" (as
    they are), "flips" (4), "dihedral" (flips and 90-degree turns: 8)."""
    turns = range(4) if invariance == "dihedral" else range(1)
    out = []
    for k in turns:
        turned = np.rot90(images, k, axes=(1, 2))
        out.append(turned)
        if invariance in ("flips", "dihedral"):
            out.append(turned[:, :, ::-1])
            if invariance == "flips":
                out += [turned[:, ::-1], turned[:, ::-1, ::-1]]
    return [np.ascontiguousarray(v) for v in out]


# --------------------------------------------------------------------------------------
# Classify mode


def train_classifier(train_ds: tf.data.Dataset, validation_ds: tf.data.Dataset | None,
                     config: DefectConfig, *, log: Log = None,
                     log_dir: str | None = None) -> ClassifyResult:
    """Builds and fits the classifier on (image_xf, label) batches; keeps the epoch with the
    best validation accuracy. ``log`` (a print-like function) gets one line per epoch."""
    config = config.check()
    cfg = config.train
    plan = distribute.plan(cfg)
    keras.utils.set_random_seed(cfg.seed)
    x, y = _arrays(train_ds)
    vx, vy = _arrays(validation_ds)
    n_classes = len(config.data.classes)
    weights = class_weights(y, n_classes) if cfg.class_weights else None
    steps = math.ceil(len(y) / plan.batch_size) * cfg.epochs
    with plan.scope():
        model = models.build_model(config)
        schedule = keras.optimizers.schedules.CosineDecay(plan.learning_rate, max(1, steps))
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)
        plan.compile(model, optimizer=keras.optimizers.AdamW(schedule,
                                                             weight_decay=cfg.weight_decay),
                     loss=loss)
    one_hot = np.eye(n_classes, dtype=np.float32)
    batches = plan.full_batches(training_batches(x, one_hot[y.astype(int)], cfg,
                                                 plan.batch_size), len(y))
    vy = vy.astype(int)

    def score() -> dict:
        p = model.predict(vx, batch_size=64, verbose=0)
        picked = np.clip(p[np.arange(len(vy)), vy], 1e-7, 1.0)
        return {"validation_accuracy": float(np.mean(p.argmax(axis=1) == vy)),
                "validation_loss": float(-np.mean(np.log(picked)))}

    best = KeepBest(model, score if len(vy) else None,
                    lambda f: (f["validation_accuracy"], -f["validation_loss"]),
                    cfg.max_minutes, log)
    start = time.perf_counter()
    model.fit(batches, epochs=cfg.epochs, class_weight=weights, verbose=0,
              callbacks=[best, *tensorboard(log_dir)])
    train_seconds = time.perf_counter() - start
    best.restore()
    if config.model.test_time_orientations:
        model = models.with_test_time_orientations(model, config)
    report = {}
    if len(vy):
        predicted = model.predict(vx, batch_size=64, verbose=0).argmax(axis=1)
        report = evaluation.classification_report(vy, predicted, config.data.classes)
    return ClassifyResult(model, report, best.history, best.best_epoch, train_seconds, len(y))


# --------------------------------------------------------------------------------------
# Anomaly mode


def fit_gaussians(extractor: keras.Model, images: np.ndarray, config: DefectConfig,
                  batch_size: int = 32) -> tuple[Gaussian, Gaussian]:
    """(local, global) Gaussians of the good parts' features, seen in every orientation
    ``anomaly.invariance`` allows: the local one over every position of every image."""
    a = config.anomaly
    features = models.feature_model(extractor, config)
    total = outer = None
    count = 0
    pooled = []
    for variant in orientations(images, a.invariance):
        for start in range(0, len(variant), batch_size):
            local, glob = features(variant[start:start + batch_size], training=False)
            f = np.asarray(local, np.float64).reshape(-1, local.shape[-1])
            total = f.sum(axis=0) if total is None else total + f.sum(axis=0)
            outer = f.T @ f if outer is None else outer + f.T @ f
            count += len(f)
            pooled.append(np.asarray(glob, np.float64))
    return (gaussian_from_moments(total, outer, count, a.shrinkage),
            gaussian(np.concatenate(pooled), a.global_shrinkage))


def pretrain(extractor: keras.Model, images: np.ndarray, config: DefectConfig,
             log: Log) -> list[dict]:
    """Trains the extractor on the pretext task (pretext.py) on the good parts; returns
    the loss and accuracy per epoch."""
    from apps.defect_images import pretext  # noqa: PLC0415

    a, cfg = config.anomaly, config.train
    plan = distribute.plan(cfg)
    names = pretext.alterations(a.invariance)
    with plan.scope():
        model = models.build_pretext_model(extractor, len(names) + 1)
        plan.compile(model, optimizer=keras.optimizers.Adam(plan.learning_rate),
                     loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                     metrics=["accuracy"])
    history: list[dict] = []
    start = time.perf_counter()

    class Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            history.append({"epoch": epoch + 1, "loss": float(logs.get("loss", 0.0)),
                            "accuracy": float(logs.get("accuracy", 0.0)),
                            "seconds": time.perf_counter() - start})
            if log and ((epoch + 1) % 10 == 0 or epoch + 1 == a.pretrain_epochs):
                log(f"pretext epoch {epoch + 1}: loss {history[-1]['loss']:.4f}  accuracy "
                    f"{history[-1]['accuracy']:.3f} ({len(names)} alterations)  "
                    f"({history[-1]['seconds']:.0f} s)")

    model.fit(plan.full_batches(pretext.pretext_dataset(images, names, a.invariance,
                                                        plan.batch_size, cfg.seed),
                                len(images)),
              epochs=a.pretrain_epochs, verbose=0, callbacks=[Progress()])
    return history


def _train_autoencoder(x: np.ndarray, vx_good: np.ndarray, config: DefectConfig,
                       log: Log) -> tuple[keras.Model, list[dict]]:
    """Fits the autoencoder to the good parts; keeps the epoch with the lowest error on the
    validation good parts. The step runs on every replica of the plan's strategy, each on
    its share of the batch (gradients summed over the replicas of a per-replica mean
    divided by their number: the mean over the global batch)."""
    cfg = config.train
    plan = distribute.plan(cfg)
    with plan.scope():
        autoencoder = models.build_autoencoder(config)
        target = keras.layers.LayerNormalization(axis=(1, 2, 3), epsilon=1e-6, center=False,
                                                 scale=False, dtype="float32")
        steps = math.ceil(len(x) / plan.batch_size) * cfg.epochs
        schedule = keras.optimizers.schedules.CosineDecay(plan.learning_rate, max(1, steps))
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay)
        if plan.policy == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(autoencoder.trainable_variables)  # not inside a replica's step
    plan.prepare(autoencoder)

    def replica_step(batch):
        with tf.GradientTape() as tape:
            error = tf.reduce_mean(tf.square(autoencoder(batch, training=True) - target(batch)))
            scaled = optimizer.scale_loss(error / plan.replicas)
        grads = tape.gradient(scaled, autoencoder.trainable_variables)
        optimizer.apply_gradients(zip(grads, autoencoder.trainable_variables, strict=True))
        return error

    @tf.function
    def step(batch):
        errors = plan.strategy.run(replica_step, args=(batch,))
        return plan.strategy.reduce(tf.distribute.ReduceOp.MEAN, errors, axis=None)

    def validation_error() -> float:
        if not len(vx_good):
            return float("nan")
        errors = [float(tf.reduce_mean(tf.square(
            autoencoder(vx_good[s:s + 64], training=False) - target(vx_good[s:s + 64]))))
            for s in range(0, len(vx_good), 64)]
        return float(np.mean(errors))

    history, best, best_weights = [], math.inf, None
    start = time.perf_counter()
    batches = plan.strategy.experimental_distribute_dataset(plan.full_batches(
        training_batches(x, np.zeros(len(x), np.int64), cfg, plan.batch_size), len(x)))
    for epoch in range(cfg.epochs):
        losses = [float(step(batch)) for batch, _ in batches]
        error = validation_error()
        elapsed = time.perf_counter() - start
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)),
                        "validation_error": error, "seconds": elapsed})
        if not error > best:  # NaN (no validation images): the last epoch
            best, best_weights = error, autoencoder.get_weights()
        if log:
            log(f"epoch {epoch + 1}: reconstruction error {np.mean(losses):.4f}  validation "
                f"good parts {error:.4f}  ({elapsed:.0f} s)")
        if cfg.max_minutes is not None and elapsed >= cfg.max_minutes * 60:
            if log:
                log(f"time budget of {cfg.max_minutes:.0f} min reached")
            break
    autoencoder.set_weights(best_weights)
    return autoencoder, history


def choose_threshold(labels: np.ndarray, scores: np.ndarray, config: DefectConfig
                     ) -> tuple[float, str, dict]:
    """(threshold, rule used, every rule's threshold) on validation scores (label 1 =
    defect)."""
    a = config.anomaly
    labels = np.asarray(labels).astype(bool)
    thresholds = {"false_alarm": evaluation.false_alarm_threshold(scores[~labels],
                                                                  a.target_false_alarm)}
    if labels.any():
        thresholds["youden"] = decision_threshold(labels, scores, "youden")
    rule = a.threshold_rule
    if rule == "auto":
        rule = "youden" if "youden" in thresholds else "false_alarm"
    if rule not in thresholds:
        raise ValueError(f"anomaly.threshold_rule: 'youden' needs labelled defects in the "
                         f"validation split, which holds {int(labels.sum())}")
    return thresholds[rule], rule, thresholds


def robust_norm(values: np.ndarray) -> tuple[float, float]:
    """(median, spread) of good parts' values: spread = half the 16-84 % range (the
    standard deviation of a normal sample, unmoved by a few outliers), never 0."""
    values = np.asarray(values, np.float64)
    median = float(np.median(values))
    low, high = np.percentile(values, [16, 84])
    spread = float((high - low) / 2.0)
    if not spread > 0:
        spread = float(np.std(values)) or max(abs(median), 1.0) * 1e-3
    return median, spread


def train_anomaly(train_ds: tf.data.Dataset, validation_ds: tf.data.Dataset | None,
                  config: DefectConfig, *, log: Log = None) -> AnomalyResult:
    """Fits the configured anomaly model to the good parts of (image_xf, is_defect)
    batches and chooses its normalisations and threshold on the validation split."""
    config = config.check()
    a, cfg = config.anomaly, config.train
    keras.utils.set_random_seed(cfg.seed)
    x, y = _arrays(train_ds)
    x = x[y == 0]  # good parts only (ingestion puts no defect in the training split)
    if not len(x):
        raise ValueError("training split: no good-part images (is_defect = 0) to learn from")
    vx, vy = _arrays(validation_ds)
    start = time.perf_counter()
    history: list[dict] = []
    if a.method == "features":
        with distribute.plan(cfg).scope():
            extractor = models.build_feature_extractor(config)
        if a.pretrain_epochs:
            history = pretrain(extractor, x, config, log)
        local, glob = fit_gaussians(extractor, x, config)
        model = models.build_gaussian_model(extractor, local, glob, config)
        if log:
            log(f"Gaussians of {len(local.mean)} local and {len(glob.mean)} texture features "
                f"fitted on {len(x)} good parts x {len(orientations(x[:1], a.invariance))} "
                "orientations")
    else:
        autoencoder, history = _train_autoencoder(x, vx[vy == 0] if len(vy) else vx, config,
                                                  log)
        model = models.build_reconstruction_model(autoencoder, config)
    train_seconds = time.perf_counter() - start
    if len(vy):
        images, labels = vx, vy.astype(int)
    else:  # no validation split: the training parts (optimistic)
        images, labels = x, np.zeros(len(x), int)
    parts = models.anomaly_parts(model, images)
    good = labels == 0
    local_norm = robust_norm(parts["local"][good])
    global_norm = robust_norm(parts["global"][good]) if a.method == "features" else None
    terms = {"local": (parts["local"] - local_norm[0]) / local_norm[1]}
    if global_norm is not None:
        terms["global"] = (parts["global"] - global_norm[0]) / global_norm[1]
    combine = a.combine if a.method == "features" else "local"
    scores = np.maximum(terms["local"], terms["global"]) if combine == "max" \
        else terms[combine]
    threshold, rule, thresholds = choose_threshold(labels, scores, config)
    scale = threshold - float(np.median(scores[good]))
    if not scale > 0:
        scale = float(np.std(scores[good])) or 1.0
    models.set_head(model, local=local_norm, global_=global_norm, combine=combine,
                    threshold=threshold, scale=scale)
    report = evaluation.detection_report(labels, scores, threshold)
    for name, values in terms.items():
        report[f"auroc_{name}"] = roc_auc(labels, values)
    if log:
        log(f"threshold {threshold:.4g} ({rule}); validation: "
            + ", ".join(f"{k} {report[k]:.4f}" for k in
                        ("auroc", "auroc_local", "auroc_global", "recall", "false_alarm_rate")
                        if k in report and report[k] == report[k]))
    level = local_norm[0] + threshold * local_norm[1] if combine != "global" \
        else float(np.percentile(parts["map"][good], 99.9))
    norms = {"local": local_norm, **({"global": global_norm} if global_norm else {})}
    return AnomalyResult(model, a.method, threshold, scale, rule, thresholds, report,
                         float(np.percentile(parts["map"][good], 99)), level, norms,
                         train_seconds, len(x),
                         history)


def train(train_ds: tf.data.Dataset, validation_ds: tf.data.Dataset | None,
          config: DefectConfig, *, log: Log = None,
          log_dir: str | None = None) -> ClassifyResult | AnomalyResult:
    """``train_classifier`` (with TensorBoard logs under ``log_dir``) or ``train_anomaly``
    (fitted, not trained by epochs), by ``config.mode``."""
    if config.mode == "anomaly":
        return train_anomaly(train_ds, validation_ds, config, log=log)
    return train_classifier(train_ds, validation_ds, config, log=log, log_dir=log_dir)


# --------------------------------------------------------------------------------------
# Serving


def classify_outputs(class_names, good_classes):
    """Serving outputs of the classifier: probabilities, class_ids, classes, scores (the
    decided class's probability) and, when good-part classes are known, is_defect."""
    names = tf.constant(list(class_names))
    defect = tf.constant([int(c not in good_classes) for c in class_names], tf.int64)

    def postprocess(probabilities: tf.Tensor) -> dict[str, tf.Tensor]:
        class_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        outputs = {"probabilities": probabilities, "class_ids": class_ids,
                   "classes": tf.gather(names, class_ids),
                   "scores": tf.reduce_max(probabilities, axis=-1)}
        if good_classes:
            outputs[IS_DEFECT] = tf.gather(defect, class_ids)
        return outputs

    return postprocess


def anomaly_outputs(threshold: float, scale: float):
    """Serving outputs of the anomaly model from its logits (-z / 2, z / 2): the score
    (threshold + scale * z), the threshold, the decision (is_defect, class_ids, classes "ok"
    / "defect"), probabilities (softmax of the logits) and decision_score (sigmoid(z): 0.5 at
    the threshold; what TFMA's thresholded metrics read)."""
    names = tf.constant(list(ANOMALY_CLASSES))

    def postprocess(logits: tf.Tensor) -> dict[str, tf.Tensor]:
        z = logits[:, 1] - logits[:, 0]
        decision = tf.cast(z >= 0.0, tf.int64)
        return {
            "probabilities": tf.nn.softmax(logits, axis=-1),
            "class_ids": decision,
            "classes": tf.gather(names, decision),
            IS_DEFECT: decision,
            SCORE: threshold + scale * z,
            THRESHOLD: tf.fill(tf.shape(z), tf.constant(threshold, tf.float32)),
            DECISION_SCORE: tf.sigmoid(z),
        }

    return postprocess


def export_spec(config: DefectConfig, result: ClassifyResult | AnomalyResult) -> ExportSpec:
    """What the served model takes (encoded image bytes) and returns."""
    if isinstance(result, AnomalyResult):
        post = anomaly_outputs(result.threshold, result.scale)
    else:
        post = classify_outputs(config.data.classes, config.data.good_classes)
    return ExportSpec(serving_features=(IMAGE,), model_inputs=(IMAGE_XF,), postprocess=post)


def export_metadata(config: DefectConfig, result: ClassifyResult | AnomalyResult) -> dict:
    """What the export records beside the model."""
    return _json_safe(_metadata(config, result))


def _json_safe(value):
    """NaN (an undefined ratio) as null, so the metadata is strict JSON."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _metadata(config: DefectConfig, result: ClassifyResult | AnomalyResult) -> dict:
    common = {"mode": config.mode, "classes": list(config.data.classes),
              "good_classes": list(config.data.good_classes),
              "train_seconds": result.train_seconds, "train_images": result.train_images}
    if isinstance(result, AnomalyResult):
        return {**common, "method": result.method, "threshold": result.threshold,
                "threshold_rule": result.rule, "thresholds": result.thresholds,
                "scale": result.scale, "map_reference": result.map_reference,
                "map_level": result.map_level, "norms": result.norms,
                "combine": config.anomaly.combine if result.method == "features" else "local",
                "validation": result.validation, "history": result.history}
    return {**common, "validation": result.validation, "best_epoch": result.best_epoch,
            "history": result.history}


def fit(inputs: TrainerInputs, config: DefectConfig) -> Trained:
    """The pipeline's hook: transformed train / validation images -> train() -> the served
    form. The Trainer's eval split is the validation split (the pipeline's eval split is
    the Evaluator's alone). The plan comes first: a multi-worker strategy must exist before
    TensorFlow runs an op."""
    batch = distribute.plan(config.train).batch_size
    label = IS_DEFECT if config.mode == "anomaly" else LABEL
    result = train(inputs.dataset(inputs.train_files, batch, IMAGE_XF, label),
                   inputs.dataset(inputs.eval_files, batch, IMAGE_XF, label), config, log=say,
                   log_dir=inputs.log_dir)
    if isinstance(result, ClassifyResult) and result.validation:
        say(f"validation accuracy {result.validation['accuracy']:.4f} (best epoch "
            f"{result.best_epoch})")
    return Trained(result.model, export_spec(config, result), export_metadata(config, result))
