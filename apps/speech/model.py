"""Models of the speech app, built from config with Keras 3 (no training here).

Every model takes float PCM [clip samples] at the preset's rate (``audio_xf``) and computes
its own features: ``LogMelSpectrogram`` (blocks.signal.log_mel, layer ``log_mel``), then a
per-mel-bin standardisation (``normalize``: statistics learned from the training data, or
each clip's own over time), then the ``body`` (a nested model) of the family:

- dscnn: a depthwise-separable CNN (DS-CNN, Zhang et al., "Hello Edge", 2017): one strided
  convolution, then blocks of 3x3 depthwise + 1x1 pointwise convolutions;
- kwt: a keyword Transformer (KWT, Berg et al., 2021): the spectrogram cut into patches of a
  few frames x all mel bins, linearly embedded, learned positions, keras-hub
  ``TransformerEncoder`` blocks;
- crnn: convolution stages (pooling mel bins and, early on, frames) then bidirectional GRUs,
  unrolled so that the TFLite converter sees plain ops (no while loop).

Keywords mode ends in class probabilities (``probabilities``, [batch, classes]); transcribe
mode keeps the time axis and ends in per-frame probabilities over the ten digits and the
CTC blank (the last output), [batch, frames, 11]. The training wrapper
(``with_augmentation``) inserts SpecAugment masking after ``normalize`` and is used by
``fit`` only: the exported model never holds a random op.
"""

from __future__ import annotations

import dataclasses

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras
from keras import layers

from apps.speech.config import DIGITS, SpeechConfig
from apps.speech.features import AUDIO_XF
from blocks.signal.log_mel import LogMelSpectrogram
from blocks.signal.spec_augment import SpecAugment

LOG_MEL = "log_mel"
NORMALIZE = "normalize"
BODY = "body"
LOGITS = "logits"
N_SYMBOLS = len(DIGITS) + 1  # transcribe: ten digits and the CTC blank (last)


def _front_end(config: SpeechConfig) -> tuple[int, int, int, int, float]:
    """Sample rate, frame and hop (samples), FFT length (the next power of two of the frame)
    and the upper mel edge (Hz) of the config's front end."""
    f, rate = config.features, config.data.sample_rate_hz
    frame = int(round(rate * f.frame_ms / 1000.0))
    fft = 1 << (frame - 1).bit_length()
    return rate, frame, int(round(rate * f.hop_ms / 1000.0)), fft, f.upper_hz or 0.95 * rate / 2


def log_mel_layer(config: SpeechConfig) -> LogMelSpectrogram:
    """The front end of the config: frames of ``frame_ms`` every ``hop_ms``, the FFT length
    the next power of two, ``num_mel_bins`` mel bands (or MFCCs)."""
    f = config.features
    rate, frame, hop, fft, upper = _front_end(config)
    return LogMelSpectrogram(rate, frame, hop, fft, f.num_mel_bins, f.lower_hz, upper,
                             log_floor=f.log_floor, num_mfcc=f.num_mfcc, name=LOG_MEL)


def front_end_text(config: SpeechConfig) -> str:
    """What a device computes before the TFLite files (they start at ``NORMALIZE``)."""
    f = config.features
    rate, frame, hop, fft, upper = _front_end(config)
    return (f"log-mel spectrogram of float PCM at {rate} Hz: frames of {frame} samples every "
            f"{hop}, FFT length {fft}, {f.num_mel_bins} mel bands {f.lower_hz:g}-{upper:g} Hz, "
            f"log(mel + {f.log_floor:g})"
            + (f", then the first {f.num_mfcc} MFCCs" if f.num_mfcc else ""))


def _bn(x, name: str):
    return layers.BatchNormalization(momentum=0.9, name=name)(x)


def _dscnn(x, config: SpeechConfig, sequence: bool):
    m = config.model
    x = layers.Conv2D(m.filters, m.first_kernel, strides=m.first_stride, padding="same",
                      use_bias=False, name="conv0")(x)
    x = layers.ReLU(name="relu0")(_bn(x, "bn0"))
    for b in range(1, m.blocks + 1):
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"dw{b}")(x)
        x = layers.ReLU(name=f"dw{b}_relu")(_bn(x, f"dw{b}_bn"))
        x = layers.Conv2D(m.filters, 1, use_bias=False, name=f"pw{b}")(x)
        x = layers.ReLU(name=f"pw{b}_relu")(_bn(x, f"pw{b}_bn"))
    if sequence:  # [batch, frames, channels]: average over the mel bins
        x = layers.AveragePooling2D((1, x.shape[2]), name="pool_bins")(x)
        return layers.Reshape((x.shape[1], x.shape[3]), name="frames")(x)
    return layers.GlobalAveragePooling2D(name="pool")(x)


def _kwt(x, config: SpeechConfig, sequence: bool):
    import keras_hub  # noqa: PLC0415 (only this family needs it)

    m = config.model
    frames, bins = x.shape[1], x.shape[2]
    patches = frames // m.patch_frames
    if patches < 1:
        raise ValueError(f"model.patch_frames: expected <= the {frames} frames of a clip, got "
                         f"{m.patch_frames}")
    x = layers.Cropping2D(((0, frames - patches * m.patch_frames), (0, 0)), name="crop")(x)
    x = layers.Reshape((patches, m.patch_frames * bins), name="patches")(x)
    x = layers.Dense(m.kwt_dim, name="patch_embedding")(x)
    x = layers.Add(name="add_positions")(
        [x, keras_hub.layers.PositionEmbedding(patches, name="position_embedding")(x)])
    for i in range(m.kwt_layers):
        x = keras_hub.layers.TransformerEncoder(
            m.kwt_mlp_dim, m.kwt_heads, dropout=m.dropout, normalize_first=True,
            name=f"encoder{i}")(x)
    x = layers.LayerNormalization(epsilon=1e-5, name="final_norm")(x)
    return x if sequence else layers.GlobalAveragePooling1D(name="pool")(x)


def _crnn(x, config: SpeechConfig, sequence: bool):
    m = config.model
    for s, filters in enumerate(m.crnn_filters):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{s}")(x)
        x = layers.ReLU(name=f"relu{s}")(_bn(x, f"bn{s}"))
        time_pool = 2 if s < m.crnn_time_pool else 1
        x = layers.MaxPooling2D((time_pool, 2), padding="same", name=f"pool{s}")(x)
    frames, bins, channels = x.shape[1], x.shape[2], x.shape[3]
    x = layers.Reshape((frames, bins * channels), name="frames")(x)
    for r in range(m.rnn_layers):
        # Unrolled: a fixed number of frames, and the TFLite converter lowers no while loop
        # of a recurrent layer with a dynamic batch.
        x = layers.Bidirectional(layers.GRU(m.rnn_units, return_sequences=True, unroll=True,
                                            reset_after=True), name=f"bigru{r}")(x)
    return x if sequence else layers.GlobalAveragePooling1D(name="pool")(x)


_FAMILIES = {"dscnn": _dscnn, "kwt": _kwt, "crnn": _crnn}


def build_model(config: SpeechConfig) -> keras.Model:
    """Returns an uncompiled model: float PCM [clip samples] -> class probabilities
    (keywords) or per-frame digit/blank probabilities (transcribe)."""
    config = config.check()
    kind = config.kind
    sequence = config.mode == "transcribe"
    n_out = N_SYMBOLS if sequence else len(config.data.classes)
    if n_out < 2:
        raise ValueError(f"data.classes: expected at least two classes, got "
                         f"{list(config.data.classes)} (the run fills them from the data)")
    pcm = keras.Input((config.clip_samples,), name=AUDIO_XF)
    features = log_mel_layer(config)(pcm)
    if config.features.normalize == "utterance":
        normalized = layers.LayerNormalization(axis=1, epsilon=1e-3, center=False,
                                               scale=False, name=NORMALIZE)(features)
    else:
        normalized = layers.BatchNormalization(axis=2, momentum=0.9, center=False,
                                               scale=False, name=NORMALIZE)(features)
    spectrogram = keras.Input(normalized.shape[1:], name="features")
    x = _FAMILIES[kind](spectrogram, config, sequence)
    x = layers.Dropout(config.model.dropout, name="dropout")(x)
    logits = layers.Dense(n_out, name=LOGITS)(x)
    probabilities = layers.Softmax(name="probabilities")(logits)
    body = keras.Model(spectrogram, probabilities, name=BODY)
    return keras.Model(pcm, body(normalized), name=f"speech_{kind}_{config.mode}")


STUDENT_FILTERS, STUDENT_BLOCKS = 16, 2


def student(teacher: keras.Model) -> keras.Model:
    """The distillation student (serving.distill) of a keywords model's ``teacher``, the part
    the .tflite files carry (the log-mel spectrogram in, class probabilities out): the
    per-mel-bin standardisation and a DS-CNN of ``STUDENT_BLOCKS`` blocks of
    ``STUDENT_FILTERS`` channels (the width and depth the "Hello Edge" study gives its
    smallest microcontroller keyword spotters), about a tenth of the default model's
    weights."""
    if len(teacher.outputs[0].shape) != 2:
        raise ValueError("student: only a keywords model (one class per clip) has a student")
    config = SpeechConfig()
    config = dataclasses.replace(config, model=dataclasses.replace(
        config.model, filters=STUDENT_FILTERS, blocks=STUDENT_BLOCKS))
    inputs = keras.Input(teacher.inputs[0].shape[1:], name="log_mel")
    x = layers.BatchNormalization(axis=2, momentum=0.9, center=False, scale=False,
                                  name=NORMALIZE)(inputs)
    x = _dscnn(x, config, sequence=False)
    x = layers.Dense(teacher.outputs[0].shape[-1], name=LOGITS)(x)
    return keras.Model(inputs, layers.Softmax(name="probabilities")(x), name="speech_student")


def body_logits(model: keras.Model) -> keras.Model:
    """The body of a built model up to its logits (training losses on logits)."""
    body = model.get_layer(BODY)
    return keras.Model(body.inputs, body.get_layer(LOGITS).output)


def with_augmentation(model: keras.Model, config: SpeechConfig, *,
                      logits: bool = False) -> keras.Model:
    """The training form of a built model: the same layers (shared weights) with SpecAugment
    masking between ``normalize`` and the body, active only when called with
    ``training=True``. Its output is the body's probabilities, or logits with ``logits``.
    Never exported."""
    t = config.train
    pcm = keras.Input(model.input_shape[1:], name=AUDIO_XF)
    x = model.get_layer(NORMALIZE)(model.get_layer(LOG_MEL)(pcm))
    x = SpecAugment(t.time_masks, t.time_mask_frames, t.freq_masks, t.freq_mask_bins,
                    seed=t.seed, name="spec_augment")(x)
    head = body_logits(model) if logits else model.get_layer(BODY)
    return keras.Model(pcm, head(x), name=f"{model.name}_training")
