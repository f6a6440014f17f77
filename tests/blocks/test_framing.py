"""blocks.signal.framing: frames of [batch, time] and [batch, time, channels] signals, and
clips padded or cropped to one length."""

from __future__ import annotations

import numpy as np
import pytest

import suite  # noqa: F401  (Keras policy before TensorFlow)
import tensorflow as tf

from blocks.signal.framing import frame_signal, pad_or_crop


def test_frames_match_numpy_slices():
    x = np.arange(2 * 10, dtype=np.float32).reshape(2, 10)
    frames = frame_signal(x, 4, 3).numpy()
    assert frames.shape == (2, 3, 4)  # 1 + (10 - 4) // 3
    np.testing.assert_array_equal(frames[1, 2], x[1, 6:10])
    multi = np.stack([x, -x], axis=-1)  # [2, 10, 2]
    framed = frame_signal(multi, 4, 3).numpy()
    assert framed.shape == (2, 3, 4, 2)
    np.testing.assert_array_equal(framed[0, 1, :, 1], -x[0, 3:7])
    padded = frame_signal(x, 4, 3, pad_end=True).numpy()
    assert padded.shape == (2, 4, 4)  # ceil(10 / 3)
    np.testing.assert_array_equal(padded[0, 3], [9, 0, 0, 0])


def test_frame_signal_rejects_bad_shapes():
    with pytest.raises(ValueError, match="shorter than one frame"):
        frame_signal(np.zeros((1, 3), np.float32), 4, 2)
    with pytest.raises(ValueError, match=r"\[batch, time\]"):
        frame_signal(np.zeros(8, np.float32), 4, 2)
    with pytest.raises(ValueError, match="hop"):
        frame_signal(np.zeros((1, 8), np.float32), 4, 0)


def test_pad_or_crop():
    x = np.arange(1, 7, dtype=np.float32).reshape(1, 6)
    np.testing.assert_array_equal(pad_or_crop(x, 4).numpy(), [[1, 2, 3, 4]])
    np.testing.assert_array_equal(pad_or_crop(x, 8).numpy(), [[1, 2, 3, 4, 5, 6, 0, 0]])
    np.testing.assert_array_equal(pad_or_crop(x, 6).numpy(), x)
    multi = np.ones((2, 3, 2), np.float32)
    out = pad_or_crop(multi, 5)
    assert out.shape == (2, 5, 2) and float(tf.reduce_sum(out)) == 12.0
    np.testing.assert_array_equal(pad_or_crop(np.ones(3, np.float32), 4, axis=0).numpy(),
                                  [1, 1, 1, 0])

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
    def to_one_second(clips):  # unknown lengths, as in a tf.data map
        return pad_or_crop(clips, 16)

    result = to_one_second(x)
    assert result.shape == (1, 16) and to_one_second.get_concrete_function().output_shapes[1] \
        == 16
    with pytest.raises(ValueError, match="length"):
        pad_or_crop(x, 0)
