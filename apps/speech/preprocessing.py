"""preprocessing_fn of the speech app (TF ops only): WAV bytes -> float PCM of the preset's
length, inside the transform graph.

Examples hold 16-bit PCM WAV bytes; a served model gets whatever WAV a client sends, so
decoding happens here, in the graph: ``tf.audio.decode_wav`` (16-bit PCM; the typed client
and ingestion convert other encodings first), the channels averaged to mono, resampling to
the preset's rate when the clip has another one (``resample``: the same windowed-sinc
interpolator as ``apps.speech.wav.resample``, so ingestion and serving agree), then
``fit_length``: a clip longer than the preset's length keeps its loudest stretch of that
length, a shorter one is centred and zero-padded (``blocks.signal.framing.pad_or_crop`` fixes
the shape). That float PCM is the transformed feature the Keras model takes (and the TFLite
models: an edge device feeds audio, not spectrograms); the log-mel features are the model's
first layer.
"""

from __future__ import annotations

import math

import numpy as np

import suite  # noqa: F401  (Keras policy before TensorFlow)
import tensorflow as tf

from apps.speech import wav
from apps.speech.config import SpeechConfig
from apps.speech.features import (
    AUDIO, AUDIO_XF, LABEL, LABEL_NAME, N_DIGITS, SOURCE_FILE, SPEAKER, TRANSCRIPT,
    TRANSCRIPT_IDS)
from blocks.signal.framing import pad_or_crop


def _sinc(x: tf.Tensor) -> tf.Tensor:
    safe = tf.where(tf.equal(x, 0.0), tf.ones_like(x), x)
    return tf.where(tf.equal(x, 0.0), tf.ones_like(x),
                    tf.sin(math.pi * safe) / (math.pi * safe))


def resample(x: tf.Tensor, in_rate: tf.Tensor, out_rate: int) -> tf.Tensor:
    """A mono clip [n] at ``in_rate`` (a scalar tensor) resampled to ``out_rate``: the
    windowed-sinc interpolator of ``apps.speech.wav.resample`` (exact integer positions,
    Kaiser window, cutoff 0.95 of the lower Nyquist frequency) in TensorFlow ops."""
    x = tf.cast(tf.reshape(x, [-1]), tf.float32)
    in_rate = tf.cast(in_rate, tf.int64)
    out = tf.constant(out_rate, tf.int64)
    n = tf.shape(x, out_type=tf.int64)[0]
    n_out = (n * out + in_rate - 1) // in_rate
    cutoff = wav.CUTOFF * tf.minimum(tf.constant(1.0, tf.float64),
                                     float(out_rate) / tf.cast(in_rate, tf.float64))
    half = tf.cast(tf.math.ceil(wav.ZERO_CROSSINGS / cutoff), tf.int64)
    offsets = tf.range(-half + 1, half + 1, dtype=tf.int64)
    j = tf.range(n_out, dtype=tf.int64)
    base = (j * in_rate) // out
    frac = tf.cast((j * in_rate) % out, tf.float64) / float(out_rate)
    d = frac[:, None] - tf.cast(offsets, tf.float64)[None, :]
    ratio = d / tf.cast(half, tf.float64)
    window = tf.math.bessel_i0(wav.KAISER_BETA * tf.sqrt(tf.maximum(1.0 - ratio * ratio, 0.0)))
    w = cutoff * _sinc(cutoff * d) * window / float(np.i0(wav.KAISER_BETA))
    padded = tf.concat([tf.zeros([half], tf.float32), x, tf.zeros([half + 1], tf.float32)], 0)
    taps = tf.gather(padded, base[:, None] + offsets[None, :] + half)
    return tf.cast(tf.reduce_sum(w * tf.cast(taps, tf.float64), axis=1), tf.float32)


def fit_length(x: tf.Tensor, length: int) -> tf.Tensor:
    """A mono clip [n] as exactly ``length`` samples: the loudest stretch of ``length``
    samples of a longer clip, a shorter clip centred between zeros."""
    n = tf.shape(x)[0]

    def loudest():
        energy = tf.concat([tf.zeros([1], tf.float64),
                            tf.cumsum(tf.cast(tf.square(x), tf.float64))], 0)
        window = energy[length:] - energy[:-length]
        start = tf.cast(tf.argmax(window), tf.int32)
        return x[start:start + length]

    def centred():
        return tf.pad(x, [[(length - n) // 2, 0]])

    fitted = tf.cond(n > length, loudest, centred)
    return pad_or_crop(fitted[None, :], length)[0]


def decode_clip(wav_bytes: tf.Tensor, sample_rate: int, length: int) -> tf.Tensor:
    """One 16-bit PCM WAV file (scalar string) -> float PCM [length] at ``sample_rate``,
    mono. A rate outside 8 .. 48 kHz fails with a message saying so."""
    audio, rate = tf.audio.decode_wav(wav_bytes, desired_channels=-1)
    rate = tf.cast(rate, tf.int32)
    checks = [
        tf.debugging.assert_greater_equal(
            rate, wav.MIN_SAMPLE_RATE_HZ,
            message=f"WAV sample rate below {wav.MIN_SAMPLE_RATE_HZ} Hz: expected "
                    f"{wav.MIN_SAMPLE_RATE_HZ} .. {wav.MAX_SAMPLE_RATE_HZ} Hz"),
        tf.debugging.assert_less_equal(
            rate, wav.MAX_SAMPLE_RATE_HZ,
            message=f"WAV sample rate above {wav.MAX_SAMPLE_RATE_HZ} Hz: expected "
                    f"{wav.MIN_SAMPLE_RATE_HZ} .. {wav.MAX_SAMPLE_RATE_HZ} Hz"),
    ]
    with tf.control_dependencies(checks):
        mono = tf.reduce_mean(audio, axis=1)
    mono = tf.cond(tf.equal(rate, sample_rate), lambda: mono,
                   lambda: resample(mono, rate, sample_rate))
    return fit_length(mono, length)


def decode_clips(wav_bytes: tf.Tensor, sample_rate: int, length: int) -> tf.Tensor:
    """WAV files [batch] (or [batch, 1]) -> float PCM [batch, length]."""
    flat = tf.reshape(wav_bytes, [-1])
    return tf.map_fn(lambda b: decode_clip(b, sample_rate, length), flat,
                     fn_output_signature=tf.TensorSpec([length], tf.float32))


def transcript_ids(transcript: tf.Tensor, max_digits: int) -> tf.Tensor:
    """Digit strings [batch] -> digit ids [batch, max_digits] (int64), -1 after the end."""
    codes = tf.strings.unicode_decode(tf.reshape(transcript, [-1]), "UTF-8")
    ids = tf.cast(codes, tf.int64) - ord("0")
    return ids.to_tensor(default_value=-1, shape=[None, max_digits])


def preprocessing_fn(inputs: dict, custom_config: dict | None = None) -> dict:
    """WAV bytes -> float PCM [batch, clip samples] (``audio_xf``), the label (keywords) or
    the transcript's digit ids (transcribe)."""
    config = SpeechConfig.from_custom(custom_config)
    outputs = {AUDIO_XF: decode_clips(inputs[AUDIO], config.data.sample_rate_hz,
                                      config.clip_samples)}
    if LABEL in inputs:
        outputs[LABEL] = tf.reshape(inputs[LABEL], [-1])
    if TRANSCRIPT in inputs:
        outputs[TRANSCRIPT_IDS] = transcript_ids(inputs[TRANSCRIPT],
                                                 config.transcribe.max_digits)
    return outputs


def raw_feature_spec(config: SpeechConfig) -> dict:
    """Feature spec of the examples written by ingestion (data.py) in the config's mode."""
    spec = {
        AUDIO: tf.io.FixedLenFeature([], tf.string),
        SPEAKER: tf.io.FixedLenFeature([], tf.string),
        SOURCE_FILE: tf.io.FixedLenFeature([], tf.string),
    }
    if config.mode == "transcribe":
        spec[TRANSCRIPT] = tf.io.FixedLenFeature([], tf.string)
        spec[N_DIGITS] = tf.io.FixedLenFeature([], tf.int64)
    else:
        spec[LABEL] = tf.io.FixedLenFeature([], tf.int64)
        spec[LABEL_NAME] = tf.io.FixedLenFeature([], tf.string)
    return spec
