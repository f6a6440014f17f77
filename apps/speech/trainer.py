"""Training of the speech models: plain ``train()`` / ``train_transcriber()`` and the
pipeline's ``fit`` hook.

Keywords: the input pipeline reads raw examples through the TFT graph (decoded,
resampled, fitted PCM), caches them, and augments training batches only: a random time
shift, a random gain, and noise at a random SNR (the data set's background-noise
recordings, or white noise when it has none) on a share of the clips; the training wrapper
adds SpecAugment masking (``model.with_augmentation``). None of it is in the exported model.
After each epoch the model is scored on the validation split (speakers or recording indices
never trained on): the weights of the best epoch are kept.

Transcribe: every epoch draws new digit strings from the single-digit training clips
(``apps.speech.strings``), trains the acoustic model with CTC, and keeps the epoch with the
lowest character error rate on the validation strings (greedy decoding).
"""

from __future__ import annotations

import glob
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras
import tensorflow as tf

from apps.speech import ctc, strings
from apps.speech.config import DIGITS, SpeechConfig
from apps.speech.features import (
    AUDIO, AUDIO_XF, LABEL, NOISE_SPLIT, SPEAKER, TRANSCRIPT, TRANSCRIPT_IDS)
from apps.speech.model import build_model, with_augmentation
from blocks.signal.noise import mix_at_snr
from pipelines.trainer import Trained, TrainerInputs
from serving.export import ExportSpec, classification_outputs
from suite import examples_io
from suite import distribute
from suite.progress import say
from suite.training import KeepBest, tensorboard

Log = Callable[[str], None]


@dataclass
class TrainResult:
    """A trained model and what training measured."""

    model: keras.Model
    history: list[dict] = field(default_factory=list)  # per epoch: loss, validation, seconds
    best_epoch: int = 0
    validation: dict = field(default_factory=dict)  # the kept epoch's validation figures
    train_seconds: float = 0.0
    train_examples: int = 0


# --------------------------------------------------------------------------------------
# Reading examples


def split_files(train_files: Sequence[str], split: str) -> list[str]:
    """The files of another split of the same ingested examples: the folder next to the
    train files' (``Split-<split>`` in a TFX ExampleGen output, ``<split>`` in an ingested
    examples folder); empty when there is none."""
    if not train_files:
        return []
    folder = os.path.dirname(train_files[0])
    parent, name = os.path.split(folder)
    sibling = os.path.join(parent, f"Split-{split}" if name.startswith("Split-") else split)
    return sorted(glob.glob(os.path.join(sibling, "*")))


def decode_wav16(data: bytes) -> np.ndarray:
    """Float samples of WAV bytes (ingested examples hold 16-bit mono at the preset's
    rate)."""
    from apps.speech import wav  # noqa: PLC0415

    frames, _ = wav.read_wav(data, "example")
    return frames.mean(axis=1) if frames.shape[1] > 1 else frames[:, 0]


def read_clips(files: Sequence[str], keys: Sequence[str] = (SPEAKER, TRANSCRIPT)
               ) -> tuple[list[np.ndarray], dict[str, list[str]]]:
    """The decoded audio of raw examples and their string features ``keys``."""
    clips: list[np.ndarray] = []
    values: dict[str, list[str]] = {k: [] for k in keys}
    if not files:
        return clips, values
    for raw in examples_io.raw_dataset(files):
        example = tf.train.Example.FromString(raw.numpy())
        feature = example.features.feature
        clips.append(decode_wav16(feature[AUDIO].bytes_list.value[0]))
        for k in keys:
            items = feature[k].bytes_list.value if k in feature else []
            values[k].append(items[0].decode() if items else "")
    return clips, values


def noise_clips(train_files: Sequence[str]) -> list[np.ndarray]:
    """The background-noise recordings of the ingested data (its noise split)."""
    return read_clips(split_files(train_files, NOISE_SPLIT), ())[0]


# --------------------------------------------------------------------------------------
# Augmentation


def _noise_bank(noises: Sequence[np.ndarray], length: int) -> np.ndarray | None:
    """The noise recordings end to end (each at least ``length`` samples, looped)."""
    usable = [np.tile(n, length // len(n) + 1) if len(n) < length else n
              for n in noises if len(n)]
    return np.concatenate(usable).astype(np.float32) if usable else None


def augmenter(config: SpeechConfig, noises: Sequence[np.ndarray] = ()):
    """A tf.data map on batches of float PCM [batch, samples]: random time shift, gain and
    noise at a random SNR (background recordings, else white noise)."""
    t, rate, length = config.train, config.data.sample_rate_hz, config.clip_samples
    shift = int(rate * t.time_shift_ms / 1000.0)
    bank = _noise_bank(noises, length)
    bank_tensor = tf.constant(bank) if bank is not None else None

    def augment(x: tf.Tensor) -> tf.Tensor:
        batch = tf.shape(x)[0]
        if shift > 0:
            padded = tf.pad(x, [[0, 0], [shift, shift]])
            offset = tf.random.uniform([batch], 0, 2 * shift + 1, dtype=tf.int32)
            index = offset[:, None] + tf.range(length)[None, :]
            x = tf.gather(padded, index, batch_dims=1)
        low, high = t.gain_db
        if high > low:
            x = x * tf.pow(10.0, tf.random.uniform([batch, 1], low, high) / 20.0)
        if t.noise_probability > 0:
            if bank_tensor is not None:
                start = tf.random.uniform([batch], 0, bank.shape[0] - length + 1,
                                          dtype=tf.int32)
                noise = tf.gather(bank_tensor, start[:, None] + tf.range(length)[None, :])
            else:
                noise = tf.random.normal([batch, length])
            snr = tf.random.uniform([batch], *t.noise_snr_db)
            noisy = mix_at_snr(x, noise, snr)
            chosen = tf.random.uniform([batch, 1]) < t.noise_probability
            x = tf.where(chosen, noisy, x)
        return x

    return augment


# --------------------------------------------------------------------------------------
# Keywords


def _arrays(dataset: tf.data.Dataset | None) -> tuple[np.ndarray, np.ndarray]:
    if dataset is None:
        return np.zeros((0,)), np.zeros((0,))
    xs, ys = [], []
    for x, y in dataset:
        xs.append(x.numpy())
        ys.append(y.numpy())
    if not xs:
        return np.zeros((0,)), np.zeros((0,))
    return np.concatenate(xs), np.concatenate(ys)


def _schedule(config: SpeechConfig, steps_per_epoch: int, learning_rate: float):
    t = config.train
    total = max(1, steps_per_epoch * t.epochs)
    warmup = min(total // 10, steps_per_epoch * 2)
    return keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else learning_rate, max(1, total - warmup),
        warmup_target=learning_rate if warmup else None, warmup_steps=warmup)


def train(train_ds: tf.data.Dataset, validation_ds: tf.data.Dataset | None,
          config: SpeechConfig, *, noises: Sequence[np.ndarray] = (), log: Log | None = None,
          verbose: int = 0, log_dir: str | None = None) -> TrainResult:
    """Builds and fits the keyword model on (audio_xf, label) batches; keeps the epoch with
    the best validation accuracy (ties: lower validation loss)."""
    config = config.check()
    t = config.train
    plan = distribute.plan(t)
    keras.utils.set_random_seed(t.seed)
    n_classes = len(config.data.classes)
    labels = np.concatenate([y.numpy() for _, y in train_ds]) if train_ds else np.zeros(0)
    if len(labels) == 0:
        raise ValueError("training split: expected clips, got none")
    augment = augmenter(config, noises)
    fit_ds = (plan.full_batches(train_ds.unbatch()
                                .shuffle(min(len(labels), 8192), seed=t.seed,
                                         reshuffle_each_iteration=True)
                                .repeat()
                                .batch(plan.batch_size))
              .map(lambda x, y: (augment(x), tf.one_hot(y, n_classes)),
                   num_parallel_calls=tf.data.AUTOTUNE)
              .prefetch(tf.data.AUTOTUNE))
    x_val, y_val = _arrays(validation_ds)
    steps = math.ceil(len(labels) / plan.batch_size)
    with plan.scope():
        model = build_model(config)
        trainer_model = with_augmentation(model, config)
        plan.compile(
            trainer_model, float32=(model,),
            optimizer=keras.optimizers.AdamW(_schedule(config, steps, plan.learning_rate),
                                             weight_decay=t.weight_decay),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=t.label_smoothing),
            metrics=["accuracy"])

    def score() -> dict:
        p = model.predict(x_val, batch_size=256, verbose=0)
        picked = np.clip(p[np.arange(len(y_val)), y_val.astype(int)], 1e-7, 1.0)
        accuracy = float(np.mean(p.argmax(axis=1) == y_val))
        loss = float(-np.mean(np.log(picked)))
        return {"validation_accuracy": accuracy, "validation_loss": loss}

    def rank(figures: dict) -> float:  # accuracy first, then the lower loss
        return figures["validation_accuracy"] - 1e-3 * min(figures["validation_loss"], 100.0)

    best = KeepBest(model, score if len(y_val) else None, rank, t.max_minutes, log)
    start = time.perf_counter()
    trainer_model.fit(fit_ds, epochs=t.epochs, steps_per_epoch=steps, verbose=verbose,
                      callbacks=[best, *tensorboard(log_dir)])
    seconds = time.perf_counter() - start
    best.restore()
    return TrainResult(model, best.history, best.best_epoch, best.best_figures, seconds,
                       len(labels))


def export_spec(config: SpeechConfig) -> ExportSpec:
    """What the served model takes (WAV bytes) and returns (keywords: class names and
    probabilities; transcribe: the decoded digit string and its score)."""
    if config.mode == "transcribe":
        postprocess = ctc.transcript_outputs(config.transcribe.decoder,
                                             config.transcribe.beam_width)
    else:
        postprocess = classification_outputs(config.data.classes)
    return ExportSpec(serving_features=(AUDIO,), model_inputs=(AUDIO_XF,),
                      postprocess=postprocess)


# --------------------------------------------------------------------------------------
# Transcribe


def string_dataset(pool: strings.DigitPool, config: SpeechConfig,
                   noises: Sequence[np.ndarray] = (), batch_size: int | None = None
                   ) -> tf.data.Dataset:
    """(PCM [clip samples], digit ids [max_digits]) batches (of ``batch_size``, by default
    ``train.batch_size``) of random strings, new ones on every pass of the generator
    (``transcribe.train_strings`` per pass), repeated."""
    t = config.transcribe
    length, max_digits = config.clip_samples, t.max_digits
    passes = [0]

    def generate():
        rng = np.random.default_rng([config.train.seed, t.seed, passes[0]])
        passes[0] += 1
        for _ in range(t.train_strings):
            s = strings.compose(rng, pool, t, length, noises)
            ids = np.full(max_digits, -1, np.int64)
            ids[:len(s.transcript)] = [int(c) for c in s.transcript]
            yield s.audio, ids

    return (tf.data.Dataset.from_generator(
        generate, output_signature=(tf.TensorSpec([length], tf.float32),
                                    tf.TensorSpec([max_digits], tf.int64)))
            .batch(batch_size or config.train.batch_size).repeat()
            .prefetch(tf.data.AUTOTUNE))


def train_transcriber(pool: strings.DigitPool, validation_ds: tf.data.Dataset | None,
                      config: SpeechConfig, *, noises: Sequence[np.ndarray] = (),
                      log: Log | None = None, verbose: int = 0,
                      log_dir: str | None = None) -> TrainResult:
    """Builds and fits the CTC acoustic model on strings drawn from ``pool`` every epoch;
    keeps the epoch with the lowest validation character error rate (ties: more exact
    strings)."""
    config = config.check()
    t = config.train
    plan = distribute.plan(t)
    keras.utils.set_random_seed(t.seed)
    if len(pool) == 0:
        raise ValueError("training split: expected single-digit clips, got none")
    x_val, y_val = _arrays(validation_ds)
    references = ctc.ids_to_strings(y_val) if len(y_val) else []
    steps = math.ceil(config.transcribe.train_strings / plan.batch_size)
    with plan.scope():
        model = build_model(config)
        trainer_model = with_augmentation(model, config, logits=True)
        plan.compile(
            trainer_model, float32=(model,),
            optimizer=keras.optimizers.AdamW(_schedule(config, steps, plan.learning_rate),
                                             weight_decay=t.weight_decay,
                                             clipnorm=5.0),
            loss=ctc.ctc_loss)

    def score() -> dict:
        p = model.predict(x_val, batch_size=64, verbose=0)
        figures = strings.string_metrics(references, ctc.greedy_decode(p))
        return {"validation_cer": figures["cer"],
                "validation_string_accuracy": figures["string_accuracy"]}

    def rank(figures: dict) -> float:  # the lower CER first, then more exact strings
        return 1e-3 * figures["validation_string_accuracy"] - figures["validation_cer"]

    best = KeepBest(model, score if references else None, rank, t.max_minutes, log)
    start = time.perf_counter()
    batches = plan.full_batches(string_dataset(pool, config, noises, plan.batch_size))
    trainer_model.fit(batches, epochs=t.epochs, steps_per_epoch=steps, verbose=verbose,
                      callbacks=[best, *tensorboard(log_dir)])
    seconds = time.perf_counter() - start
    best.restore()
    return TrainResult(model, best.history, best.best_epoch, best.best_figures, seconds,
                       config.transcribe.train_strings * len(best.history))


def digit_pool(files: Sequence[str], config: SpeechConfig) -> strings.DigitPool:
    """The single-digit training clips of raw transcribe examples."""
    clips, values = read_clips(files, (SPEAKER, TRANSCRIPT))
    keep = [i for i, d in enumerate(values[TRANSCRIPT]) if len(d) == 1 and d in DIGITS]
    return strings.DigitPool([clips[i] for i in keep], [values[TRANSCRIPT][i] for i in keep],
                             [values[SPEAKER][i] for i in keep], [str(i) for i in keep],
                             config.data.sample_rate_hz)


def export_metadata(config: SpeechConfig, result: TrainResult) -> dict:
    """What the export records beside the model."""
    return {"mode": config.mode, "kind": config.kind, "classes": list(config.classes),
            "blank_index": ctc.BLANK if config.mode == "transcribe" else None,
            "sample_rate_hz": config.data.sample_rate_hz,
            "clip_samples": config.clip_samples, "best_epoch": result.best_epoch,
            "validation": result.validation, "history": result.history,
            "train_seconds": result.train_seconds}


def fit(inputs: TrainerInputs, config: SpeechConfig) -> Trained:
    """The pipeline's hook: train / validation data through the transform graph ->
    ``train()`` (or ``train_transcriber()``) -> the served form. The Trainer's eval split is
    the validation split (the pipeline's eval split is the Evaluator's alone). The plan
    comes first: a multi-worker strategy must exist before TensorFlow runs an op."""
    batch = distribute.plan(config.train).batch_size
    noises = noise_clips(inputs.train_files)
    if config.mode == "transcribe":
        result = train_transcriber(
            digit_pool(inputs.train_files, config),
            inputs.dataset(inputs.eval_files, batch, AUDIO_XF, TRANSCRIPT_IDS), config,
            noises=noises, log=say, log_dir=inputs.log_dir)
    else:
        result = train(inputs.dataset(inputs.train_files, batch, AUDIO_XF, LABEL),
                       inputs.dataset(inputs.eval_files, batch, AUDIO_XF, LABEL), config,
                       noises=noises, log=say, log_dir=inputs.log_dir)
    say(f"kept epoch {result.best_epoch}: "
        + ", ".join(f"{k} {v:.4f}" for k, v in result.validation.items()))
    return Trained(result.model, export_spec(config), export_metadata(config, result))
