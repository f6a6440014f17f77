"""Training of the sensor-vibration models: a plain ``train()`` and the pipeline's ``fit`` hook.

The input pipeline reads raw windows and applies the TFT transform graph, then caches the
transformed windows; augmentation (white noise at a random SNR, time shift) happens only
here, on training batches, so the exported model never contains it.
"""

from __future__ import annotations

import math

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras
import tensorflow as tf

from apps.sensor_vibration.config import TrainConfig, VibrationConfig
from apps.sensor_vibration.features import LABEL, SIGNAL, SIGNAL_XF
from apps.sensor_vibration.model import build_model
from blocks.signal.noise import add_noise_at_snr
from pipelines.trainer import Trained, TrainerInputs
from serving.export import ExportSpec, classification_outputs
from suite import distribute
from suite.training import tensorboard


def export_spec(config: VibrationConfig) -> ExportSpec:
    """What the served vibration model takes and returns."""
    return ExportSpec(serving_features=(SIGNAL,), model_inputs=(SIGNAL_XF,),
                      postprocess=classification_outputs(config.data.classes))


def augment(signal: tf.Tensor, cfg: TrainConfig) -> tf.Tensor:
    """Adds white noise at a random SNR to a random share of windows, and shifts in time."""
    if cfg.max_shift > 0:
        shift = tf.random.uniform([], -cfg.max_shift, cfg.max_shift + 1, dtype=tf.int32)
        signal = tf.roll(signal, shift, axis=1)
    return add_noise_at_snr(signal, cfg.noise_snr_db, cfg.noise_probability)


def train(train_ds: tf.data.Dataset, eval_ds: tf.data.Dataset | None, config: VibrationConfig,
          *, verbose: int = 2, log_dir: str | None = None) -> keras.Model:
    """Builds and fits the configured model on (signal_xf, label) batches (of the plan's
    global batch size, ``distribute.plan(config.train).batch_size``); returns it."""
    cfg = config.train
    plan = distribute.plan(cfg)
    keras.utils.set_random_seed(cfg.seed)
    train_ds = plan.full_batches(train_ds).shuffle(2048, seed=cfg.seed,
                                                   reshuffle_each_iteration=True)
    train_ds = train_ds.map(lambda x, y: (augment(x, cfg), y),
                            num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    with plan.scope():
        model = build_model(config)
        plan.compile(model, optimizer=keras.optimizers.Adam(plan.learning_rate),
                     loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    callbacks = tensorboard(log_dir)
    if cfg.lr_schedule == "cosine":
        callbacks.append(keras.callbacks.LearningRateScheduler(
            lambda epoch: plan.learning_rate * 0.5 * (1 + math.cos(math.pi * epoch / cfg.epochs))))
    model.fit(train_ds, validation_data=plan.sharded(eval_ds), epochs=cfg.epochs, verbose=verbose,
              callbacks=callbacks)
    return model


def fit(inputs: TrainerInputs, config: VibrationConfig) -> Trained:
    """The pipeline's hook: transformed train / eval windows -> train() -> the served form.
    The plan comes first: a multi-worker strategy must exist before TensorFlow runs an op."""
    batch = distribute.plan(config.train).batch_size
    model = train(inputs.dataset(inputs.train_files, batch, SIGNAL_XF, LABEL),
                  inputs.dataset(inputs.eval_files, batch, SIGNAL_XF, LABEL), config,
                  log_dir=inputs.log_dir)
    return Trained(model, export_spec(config))
