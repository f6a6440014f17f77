"""Image backbones built from config and randomly initialised (no weights can be
downloaded): a compact CNN and a keras-hub ResNet, behind a per-image standardisation.

Every layer is a built-in Keras or keras-hub layer, so a saved ``.keras`` model, the
SavedModel and every TFLite variant carry them without custom code.
"""

from __future__ import annotations

from collections.abc import Sequence

import suite  # noqa: F401  (Keras policy before TensorFlow)
from keras import layers


def standardize(x, name: str = "standardize"):
    """Per-image standardisation (zero mean, unit variance over all pixels): exposure and
    detector gain differ between cameras and machines, and a per-image scale carries none of
    that into the model. epsilon is well below the variance of a low-contrast image (about
    1e-3 for intensities in [0, 1]), so the exposure scale really drops out."""
    return layers.LayerNormalization(axis=(1, 2, 3), epsilon=1e-6, center=False, scale=False,
                                     name=name)(x)


def compact_cnn_stages(x, filters: Sequence[int], prefix: str = "") -> list:
    """Stages of two 3x3 conv + batch norm + ReLU, max-pooled between stages; returns each
    stage's output. ``prefix`` starts every layer name (two such networks in one model)."""
    stages = []
    for stage, n in enumerate(filters):
        if stage:
            x = layers.MaxPooling2D(2, name=f"{prefix}pool{stage}")(x)
        for i in range(2):
            x = layers.Conv2D(n, 3, padding="same", use_bias=False,
                              name=f"{prefix}conv{stage}_{i}")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"{prefix}bn{stage}_{i}")(x)
            x = layers.ReLU(name=f"{prefix}relu{stage}_{i}")(x)
        stages.append(x)
    return stages


def compact_cnn(x, filters: Sequence[int]):
    """The compact CNN (``compact_cnn_stages``): its last stage's output."""
    return compact_cnn_stages(x, filters)[-1]


def resnet(x, filters: Sequence[int], blocks: Sequence[int], image_size: int, channels: int):
    """A keras-hub ResNet backbone (basic blocks, one stage per entry of ``filters``),
    randomly initialised; its first stage must have 64 filters."""
    import keras_hub  # noqa: PLC0415 (only ResNet models need it)

    if len(blocks) != len(filters):
        raise ValueError(f"model.blocks: expected one count per stage of model.filters "
                         f"({len(filters)}), got {list(blocks)}")
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[filters[0]],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=list(filters),
        stackwise_num_blocks=list(blocks),
        stackwise_num_strides=[1] + [2] * (len(filters) - 1),
        block_type="basic_block",
        image_shape=(image_size, image_size, channels),
        name="resnet_backbone",
    )
    return backbone(x)


STUDENT_FILTERS = (16, 32, 64)


def compact_student(teacher):
    """The distillation student (serving.distill) of an image classifier ``teacher`` (the
    model the .tflite files carry: image in, class probabilities out): the per-image
    standardisation and the compact CNN of ``STUDENT_FILTERS`` channels, global pooling
    and a softmax layer. About 75 thousand weights, under a tenth of a ResNet backbone's
    (over a million), and its stages see the whole image at every scale a ResNet's
    early stages do."""
    import keras  # noqa: PLC0415

    inputs = keras.Input(teacher.inputs[0].shape[1:], name="image")
    x = compact_cnn(standardize(inputs), STUDENT_FILTERS)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(teacher.outputs[0].shape[-1], activation="softmax",
                           name="probabilities")(x)
    return keras.Model(inputs, outputs, name="compact_student")
