"""SpecAugment time and frequency masking (Park et al., 2019) as a Keras 3 layer.

Active only when called with ``training=True`` (``fit``); at inference the layer returns its
input as is, so exported graphs (SavedModel, TFLite) hold no random ops for it. Import this
module before loading a saved model that holds the layer (``suite_blocks>SpecAugment``).
"""

from __future__ import annotations

from typing import Any

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="suite_blocks")
class SpecAugment(keras.layers.Layer):
    """Masks random time and frequency bands of spectrograms [batch, frames, bins, channels].

    Per example: ``max_time_masks`` bands of frames, each U{0 .. ``max_time_width``} frames
    wide, and ``max_freq_masks`` bands of bins, each U{0 .. ``max_freq_width``} bins wide, at
    uniform positions, are set to ``mask_value`` (0 suits standardized features). ``seed``
    makes the masks reproducible.
    """

    def __init__(self, max_time_masks: int, max_time_width: int, max_freq_masks: int,
                 max_freq_width: int, mask_value: float = 0.0, seed: int | None = None,
                 **kwargs: Any):
        super().__init__(**kwargs)
        for field, value in (("max_time_masks", max_time_masks),
                             ("max_time_width", max_time_width),
                             ("max_freq_masks", max_freq_masks),
                             ("max_freq_width", max_freq_width)):
            if int(value) != value or value < 0:
                raise ValueError(f"SpecAugment {self.name}: {field}: expected an integer >= 0, "
                                 f"got {value!r}")
        self.max_time_masks = int(max_time_masks)
        self.max_time_width = int(max_time_width)
        self.max_freq_masks = int(max_freq_masks)
        self.max_freq_width = int(max_freq_width)
        self.mask_value = float(mask_value)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape) -> None:
        if len(input_shape) != 4:
            raise ValueError(f"SpecAugment {self.name}: expected spectrograms [batch, frames, "
                             f"bins, channels], got shape {tuple(input_shape)}")

    def compute_output_shape(self, input_shape) -> tuple:
        return tuple(input_shape)

    def _bands(self, batch, length, masks: int, max_width: int):
        """[batch, length] bool: inside any of ``masks`` random bands per example."""
        width = keras.random.randint((batch, masks, 1), 0, max_width + 1,
                                     seed=self.seed_generator, dtype="int32")
        width = ops.minimum(width, length)
        room = ops.cast(length - width + 1, "float32")
        start = ops.cast(keras.random.uniform((batch, masks, 1), seed=self.seed_generator)
                         * room, "int32")
        position = ops.reshape(ops.arange(length, dtype="int32"), (1, 1, -1))
        return ops.any((position >= start) & (position < start + width), axis=1)

    def call(self, inputs, training=None):
        if not training:
            return inputs
        shape = ops.shape(inputs)
        batch, frames, bins = shape[0], shape[1], shape[2]
        masked = None
        if self.max_time_masks and self.max_time_width:
            masked = self._bands(batch, frames, self.max_time_masks,
                                 self.max_time_width)[:, :, None, None]
        if self.max_freq_masks and self.max_freq_width:
            freq = self._bands(batch, bins, self.max_freq_masks,
                               self.max_freq_width)[:, None, :, None]
            masked = freq if masked is None else masked | freq
        if masked is None:
            return inputs
        return ops.where(masked, ops.cast(self.mask_value, inputs.dtype), inputs)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(max_time_masks=self.max_time_masks, max_time_width=self.max_time_width,
                      max_freq_masks=self.max_freq_masks, max_freq_width=self.max_freq_width,
                      mask_value=self.mask_value, seed=self.seed)
        return config
