"""blocks.signal.spec_augment: masking only when training, identity (no random ops) at
inference, and serialisation."""

from __future__ import annotations

import numpy as np
import pytest

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras
import tensorflow as tf

from blocks.signal.spec_augment import SpecAugment

SHAPE = (4, 20, 16, 1)  # [batch, frames, bins, channels]


def _spectrograms() -> np.ndarray:
    return np.random.default_rng(0).uniform(1.0, 2.0, size=SHAPE).astype(np.float32)


def test_inference_is_the_identity():
    x = _spectrograms()
    layer = SpecAugment(2, 5, 2, 4, seed=0)
    np.testing.assert_array_equal(layer(x, training=False).numpy(), x)
    np.testing.assert_array_equal(layer(x).numpy(), x)  # training defaults to False

    @tf.function(input_signature=[tf.TensorSpec([None, 20, 16, 1], tf.float32)])
    def serve(batch):
        return layer(batch, training=False)

    kinds = {op.type for op in serve.get_concrete_function().graph.get_operations()}
    assert not [k for k in kinds if "Random" in k], kinds


def test_training_masks_time_and_frequency_bands():
    x = _spectrograms()
    out = SpecAugment(2, 5, 2, 4, mask_value=0.0, seed=1)(x, training=True).numpy()
    masked = out == 0.0
    assert masked.any() and not masked.all()
    np.testing.assert_array_equal(out[~masked], x[~masked])  # the rest is untouched
    for example in masked[..., 0]:
        rows = example.all(axis=1)  # whole frames masked (time masks)
        cols = example.all(axis=0)  # whole bins masked (frequency masks)
        # Every masked cell lies in a masked frame or a masked bin.
        assert np.array_equal(example, rows[:, None] | cols[None, :])
        assert rows.sum() <= 2 * 5 and cols.sum() <= 2 * 4
    # Only time masks, only frequency masks.
    times = SpecAugment(3, 6, 0, 0, seed=2)(x, training=True).numpy() == 0.0
    assert times.any() and np.array_equal(times, np.broadcast_to(
        times.all(axis=2, keepdims=True), times.shape))
    freqs = SpecAugment(0, 0, 3, 6, seed=2)(x, training=True).numpy() == 0.0
    assert freqs.any() and np.array_equal(freqs, np.broadcast_to(
        freqs.all(axis=1, keepdims=True), freqs.shape))


def test_in_a_model_fit_and_save(tmp_path):
    inputs = keras.Input(SHAPE[1:])
    x = SpecAugment(1, 3, 1, 3, mask_value=-1.0, seed=0, name="spec_augment")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.fit(_spectrograms(), np.array([0, 1, 0, 1]), epochs=1, verbose=0)
    path = str(tmp_path / "spec.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_layer("spec_augment").get_config() == \
        model.get_layer("spec_augment").get_config()
    np.testing.assert_allclose(loaded.predict(_spectrograms(), verbose=0),
                               model.predict(_spectrograms(), verbose=0), atol=1e-6)
    with pytest.raises(ValueError, match="max_time_width"):
        SpecAugment(1, -1, 1, 1)
    with pytest.raises(ValueError, match=r"\[batch, frames, bins, channels\]"):
        SpecAugment(1, 1, 1, 1)(keras.Input((20, 16)))
