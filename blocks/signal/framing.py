"""Framing and fixed-length clips of time signals (plain TensorFlow functions).

``frame_signal`` cuts a batch of signals into (overlapping) frames; ``pad_or_crop`` brings
clips to one length, e.g. audio clips to exactly one second or vibration recordings to a
whole number of windows.
"""

from __future__ import annotations

import suite  # noqa: F401  (Keras policy before TensorFlow)
import tensorflow as tf


def frame_signal(x: tf.Tensor, frame_length: int, hop: int, *,
                 pad_end: bool = False) -> tf.Tensor:
    """Frames of ``frame_length`` samples every ``hop`` samples along the time axis.

    ``x`` is [batch, time] -> [batch, frames, frame_length], or [batch, time, channels] ->
    [batch, frames, frame_length, channels]; frames = 1 + (time - frame_length) // hop (no
    partial frame), or ceil(time / hop) with ``pad_end`` (the last frames zero-padded).
    """
    if frame_length < 1 or hop < 1:
        raise ValueError(f"frame_signal: expected frame_length >= 1 and hop >= 1, got "
                         f"frame_length={frame_length}, hop={hop}")
    x = tf.convert_to_tensor(x)
    if x.shape.rank not in (2, 3):
        raise ValueError(f"frame_signal: expected a signal [batch, time] or [batch, time, "
                         f"channels], got shape {x.shape}")
    time = x.shape[1]
    if time is not None and time < frame_length and not pad_end:
        raise ValueError(f"frame_signal: a signal of {time} samples is shorter than one frame "
                         f"({frame_length} samples); expected at least {frame_length}")
    return tf.signal.frame(x, frame_length, hop, pad_end=pad_end, axis=1)


def pad_or_crop(x: tf.Tensor, length: int, *, axis: int = 1) -> tf.Tensor:
    """``x`` with exactly ``length`` samples along ``axis`` (the time axis of [batch, time] or
    [batch, time, channels]; 0 for a single clip): longer signals keep their first ``length``
    samples, shorter ones are padded with zeros on the right."""
    if length < 1:
        raise ValueError(f"pad_or_crop: expected length >= 1, got {length}")
    x = tf.convert_to_tensor(x)
    rank = x.shape.rank
    if rank is None or not -rank <= axis < rank:
        raise ValueError(f"pad_or_crop: axis {axis} is out of range for shape {x.shape}")
    axis %= rank
    cropped = x[(slice(None),) * axis + (slice(0, length),)]
    missing = tf.maximum(length - tf.shape(cropped)[axis], 0)
    paddings = [[0, 0]] * axis + [[0, missing]] + [[0, 0]] * (rank - axis - 1)
    shape = x.shape.as_list()
    shape[axis] = length
    return tf.ensure_shape(tf.pad(cropped, paddings), shape)
