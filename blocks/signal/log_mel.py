"""Log-mel spectrogram (and MFCC) of PCM audio as a Keras 3 layer that converts to TFLite.

The short-time Fourier transform is a fixed (non-trainable) DFT computed as one strided
convolution over the raw samples, not ``tf.signal.stft``: both convert to builtin TFLite ops
in float, but the RFFT2D / REAL / IMAG kernels behind ``stft`` have no integer version, so an
int8 model would keep float islands around them (not integer-only); the convolution
quantizes like any CNN layer. Only the DFT bins that some mel filter uses are computed.

The mel matrix is ``tf.signal.linear_to_mel_weight_matrix`` and the MFCCs are those of
``tf.signal.mfccs_from_log_mel_spectrograms`` (taken as a matrix: that function's DCT runs on
RFFT too), so the features match a ``tf.signal`` pipeline (periodic Hann window, frames
without end padding).

Import this module before loading a saved model that holds the layer (it registers it as
``suite_blocks>LogMelSpectrogram``).
"""

from __future__ import annotations

from typing import Any

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras
import numpy as np
import tensorflow as tf


def _periodic_hann(length: int) -> np.ndarray:
    """tf.signal.hann_window(length) (periodic), the window of tf.signal.stft."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)


@keras.saving.register_keras_serializable(package="suite_blocks")
class LogMelSpectrogram(keras.layers.Layer):
    """Float PCM [batch, samples] -> log-mel spectrogram [batch, frames, bins, 1].

    Frames of ``frame_length`` samples every ``frame_step`` samples (frames = 1 + (samples -
    frame_length) // frame_step), periodic-Hann windowed, zero-padded to ``fft_length``;
    power |X|^2 per DFT bin, projected on ``num_mel_bins`` triangular mel filters between
    ``lower_hz`` and ``upper_hz``, then log(mel + ``log_floor``). With ``num_mfcc`` > 0 the
    output holds the first ``num_mfcc`` MFCCs (DCT-II of the log-mel bins) instead. The last
    axis is a channel axis for 2-D convolutions. Computed in float32 whatever the dtype policy
    (powers of loud audio overflow float16).
    """

    def __init__(self, sample_rate: int, frame_length: int, frame_step: int, fft_length: int,
                 num_mel_bins: int, lower_hz: float, upper_hz: float, log_floor: float = 1e-6,
                 num_mfcc: int = 0, **kwargs: Any):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        problems = []
        for field, value in (("sample_rate", sample_rate), ("frame_length", frame_length),
                             ("frame_step", frame_step), ("fft_length", fft_length),
                             ("num_mel_bins", num_mel_bins)):
            if int(value) != value or value < 1:
                problems.append(f"{field}: expected a positive integer, got {value!r}")
        if not problems and fft_length < frame_length:
            problems.append(f"fft_length: expected >= frame_length ({frame_length}), got "
                            f"{fft_length}")
        if not 0.0 <= lower_hz < upper_hz <= sample_rate / 2.0:
            problems.append(f"lower_hz, upper_hz: expected 0 <= lower_hz < upper_hz <= "
                            f"sample_rate / 2 ({sample_rate / 2.0:g}), got {lower_hz!r}, "
                            f"{upper_hz!r}")
        if not log_floor > 0.0:
            problems.append(f"log_floor: expected > 0, got {log_floor!r}")
        if int(num_mfcc) != num_mfcc or not 0 <= num_mfcc <= num_mel_bins:
            problems.append(f"num_mfcc: expected 0 .. num_mel_bins ({num_mel_bins}), got "
                            f"{num_mfcc!r}")
        if problems:
            raise ValueError(f"LogMelSpectrogram {self.name}: " + "; ".join(problems))
        self.sample_rate = int(sample_rate)
        self.frame_length = int(frame_length)
        self.frame_step = int(frame_step)
        self.fft_length = int(fft_length)
        self.num_mel_bins = int(num_mel_bins)
        self.lower_hz = float(lower_hz)
        self.upper_hz = float(upper_hz)
        self.log_floor = float(log_floor)
        self.num_mfcc = int(num_mfcc)
        self._kernel, self._mel = self._matrices()
        self._dct = self._dct_matrix() if self.num_mfcc else None

    def _matrices(self) -> tuple[np.ndarray, np.ndarray]:
        """(DFT kernel [frame_length, 1, 2 * bins]: windowed cos | -sin, mel matrix [bins,
        num_mel_bins]) over the contiguous range of DFT bins some mel filter uses."""
        with tf.init_scope():  # a constant even when the layer is built inside a graph
            mel = tf.signal.linear_to_mel_weight_matrix(
                self.num_mel_bins, self.fft_length // 2 + 1, self.sample_rate, self.lower_hz,
                self.upper_hz).numpy()
        used = np.flatnonzero(np.any(mel > 0.0, axis=1))
        if used.size == 0:
            raise ValueError(f"LogMelSpectrogram {self.name}: no DFT bin of fft_length "
                             f"{self.fft_length} falls between lower_hz {self.lower_hz:g} and "
                             f"upper_hz {self.upper_hz:g}; expected a wider band or a longer "
                             "fft_length")
        bins = np.arange(used[0], used[-1] + 1)
        angle = 2.0 * np.pi * np.outer(np.arange(self.frame_length), bins) / self.fft_length
        window = _periodic_hann(self.frame_length)[:, None]
        kernel = np.concatenate([np.cos(angle) * window, -np.sin(angle) * window], axis=1)
        return kernel[:, None, :].astype(np.float32), mel[bins].astype(np.float32)

    def _dct_matrix(self) -> np.ndarray:
        """[num_mel_bins, num_mfcc]: log-mel bins -> the first MFCCs, as
        tf.signal.mfccs_from_log_mel_spectrograms computes them (a linear map, read off the
        identity)."""
        with tf.init_scope():
            basis = tf.signal.mfccs_from_log_mel_spectrograms(
                tf.eye(self.num_mel_bins, dtype=tf.float64)).numpy()
        return basis[:, :self.num_mfcc].astype(np.float32)

    def _frames(self, samples: int | None) -> int | None:
        if samples is None:
            return None
        if samples < self.frame_length:
            raise ValueError(f"LogMelSpectrogram {self.name}: a clip of {samples} samples is "
                             f"shorter than one frame; expected at least {self.frame_length} "
                             "samples")
        return 1 + (samples - self.frame_length) // self.frame_step

    def build(self, input_shape) -> None:
        if len(input_shape) != 2:
            raise ValueError(f"LogMelSpectrogram {self.name}: expected PCM [batch, samples], "
                             f"got shape {tuple(input_shape)}")
        self._frames(input_shape[1])

    def compute_output_shape(self, input_shape) -> tuple:
        bins = self.num_mfcc or self.num_mel_bins
        return (input_shape[0], self._frames(input_shape[1]), bins, 1)

    def call(self, inputs):
        x = tf.cast(inputs, tf.float32)
        # [batch, frames, 2 * bins]: real and imaginary parts of every frame's DFT.
        spectrum = tf.nn.conv1d(tf.expand_dims(x, -1), tf.constant(self._kernel),
                                stride=self.frame_step, padding="VALID")
        real, imag = tf.split(spectrum, 2, axis=-1)
        power = real * real + imag * imag
        mel = tf.matmul(power, tf.constant(self._mel))
        features = tf.math.log(mel + self.log_floor)
        if self._dct is not None:
            features = tf.matmul(features, tf.constant(self._dct))
        return tf.expand_dims(features, -1)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(sample_rate=self.sample_rate, frame_length=self.frame_length,
                      frame_step=self.frame_step, fft_length=self.fft_length,
                      num_mel_bins=self.num_mel_bins, lower_hz=self.lower_hz,
                      upper_hz=self.upper_hz, log_floor=self.log_floor,
                      num_mfcc=self.num_mfcc)
        return config
