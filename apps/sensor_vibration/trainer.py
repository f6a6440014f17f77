"""Training of the sensor-vibration models: a plain ``train()`` and the TFX ``run_fn`` adapter.

The input pipeline reads raw windows and applies the TFT transform graph, then caches the
transformed windows; augmentation (white noise at a random SNR, time shift) happens only
here, on training batches, so the exported model never contains it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras
import tensorflow as tf

from apps.sensor_vibration.config import TrainConfig, VibrationConfig
from apps.sensor_vibration.model import build_model
from apps.sensor_vibration.preprocessing import LABEL, SIGNAL, SIGNAL_XF, config_from_custom
from serving.export import ExportSpec, classification_outputs, export_serving_model
from suite import examples_io
from suite.config import to_dict
from suite.distribute import strategy as pick_strategy

WARMUP_EXAMPLES = 8


def export_spec(config: VibrationConfig) -> ExportSpec:
    """What the served vibration model takes and returns."""
    return ExportSpec(serving_features=(SIGNAL,), model_inputs=(SIGNAL_XF,),
                      postprocess=classification_outputs(config.data.classes))


def transformed_dataset(files: Sequence[str], tf_transform_output,
                        batch_size: int) -> tf.data.Dataset:
    """(signal_xf, label) batches: raw examples parsed and run through the TFT graph, cached."""
    return examples_io.transformed_dataset(files, tf_transform_output, batch_size,
                                           SIGNAL_XF, LABEL)


def augment(signal: tf.Tensor, cfg: TrainConfig) -> tf.Tensor:
    """Adds white noise at a random SNR to a random share of windows, and shifts in time."""
    if cfg.max_shift > 0:
        shift = tf.random.uniform([], -cfg.max_shift, cfg.max_shift + 1, dtype=tf.int32)
        signal = tf.roll(signal, shift, axis=1)
    if cfg.noise_probability <= 0:
        return signal
    batch = tf.shape(signal)[0]
    power = tf.reduce_mean(tf.square(signal), axis=[1, 2], keepdims=True)
    low, high = cfg.noise_snr_db
    snr_db = tf.random.uniform([batch, 1, 1], low, high)
    noise_std = tf.sqrt(power / tf.pow(10.0, snr_db / 10.0))
    noisy = tf.random.uniform([batch, 1, 1]) < cfg.noise_probability
    noise = tf.random.normal(tf.shape(signal)) * noise_std
    return signal + tf.where(noisy, noise, tf.zeros_like(noise))


def train(train_ds: tf.data.Dataset, eval_ds: tf.data.Dataset | None, config: VibrationConfig,
          *, verbose: int = 2, log_dir: str | None = None) -> keras.Model:
    """Builds and fits the configured model on (signal_xf, label) batches; returns it."""
    cfg = config.train
    keras.utils.set_random_seed(cfg.seed)
    train_ds = train_ds.shuffle(2048, seed=cfg.seed, reshuffle_each_iteration=True)
    train_ds = train_ds.map(lambda x, y: (augment(x, cfg), y),
                            num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    with pick_strategy().scope():
        model = build_model(config)
        model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    callbacks = [keras.callbacks.TensorBoard(log_dir)] if log_dir else []
    if cfg.lr_schedule == "cosine":
        callbacks.append(keras.callbacks.LearningRateScheduler(
            lambda epoch: cfg.learning_rate * 0.5 * (1 + math.cos(math.pi * epoch / cfg.epochs))))
    elif cfg.lr_schedule != "constant":
        raise ValueError(f"train.lr_schedule: expected 'constant' or 'cosine', "
                         f"got {cfg.lr_schedule!r}")
    model.fit(train_ds, validation_data=eval_ds, epochs=cfg.epochs, verbose=verbose,
              callbacks=callbacks)
    return model


def warmup_examples(files: Sequence[str], n: int = WARMUP_EXAMPLES) -> list[bytes]:
    """The first ``n`` real serialized examples, for TF Serving warmup requests."""
    return examples_io.first_examples(files, n)


def run_fn(fn_args) -> None:
    """TFX Trainer entry point: unpacks fn_args, calls train() and the shared export."""
    import tensorflow_transform as tft

    config = config_from_custom(fn_args.custom_config)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    train_files = examples_io.expand_files(fn_args.train_files)
    eval_files = examples_io.expand_files(fn_args.eval_files)
    batch = config.train.batch_size
    model = train(transformed_dataset(train_files, tf_transform_output, batch),
                  transformed_dataset(eval_files, tf_transform_output, batch), config,
                  log_dir=os.path.join(fn_args.model_run_dir, "logs"))
    export_serving_model(model, tf_transform_output, fn_args.serving_model_dir,
                         export_spec(config), model_name=config.model_name,
                         warmup_examples=warmup_examples(eval_files),
                         metadata={"app": "sensor_vibration", "config": to_dict(config)})
