"""CNNs of the medical-scans app, built from config (Keras 3; no training here).

Every model takes ``image_xf`` [size, size, channels] (the decoded image, intensities in
[0, 1]) and returns class probabilities. Its first layer standardises each image (zero mean,
unit variance over all its pixels): X-ray exposure and detector gain differ between machines
and hospitals, and a per-image scale carries none of that into the model. The last feature
map is the output of a layer named ``features``, which Grad-CAM explains
(blocks/vision/gradcam.py).
"""

from __future__ import annotations

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras
from keras import layers

from apps.medical_scans.config import MedicalConfig
from apps.medical_scans.preprocessing import IMAGE_XF

FEATURES = "features"


def _compact_cnn(x, filters: tuple[int, ...]):
    """Stages of two 3x3 conv + batch norm + ReLU, max-pooled between stages."""
    for stage, n in enumerate(filters):
        if stage:
            x = layers.MaxPooling2D(2, name=f"pool{stage}")(x)
        for i in range(2):
            x = layers.Conv2D(n, 3, padding="same", use_bias=False,
                              name=f"conv{stage}_{i}")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"bn{stage}_{i}")(x)
            x = layers.ReLU(name=f"relu{stage}_{i}")(x)
    return x


def _resnet(x, config: MedicalConfig):
    """A ResNet backbone from keras-hub (basic blocks), randomly initialised from config."""
    import keras_hub

    m = config.model
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[m.filters[0]],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=list(m.filters),
        stackwise_num_blocks=list(m.blocks),
        stackwise_num_strides=[1] + [2] * (len(m.filters) - 1),
        block_type="basic_block",
        image_shape=(m.image_size, m.image_size, m.channels),
        name="resnet_backbone",
    )
    return backbone(x)


def build_model(config: MedicalConfig) -> keras.Model:
    """Returns an uncompiled model: standardised image -> probabilities of the classes."""
    m = config.model
    if m.kind not in ("cnn", "resnet"):
        raise ValueError(f"model.kind: expected 'cnn' or 'resnet', got {m.kind!r}")
    if m.kind == "resnet" and len(m.blocks) != len(m.filters):
        raise ValueError(f"model.blocks: expected one count per stage of model.filters "
                         f"({len(m.filters)}), got {list(m.blocks)}")
    inputs = keras.Input((m.image_size, m.image_size, m.channels), name=IMAGE_XF)
    # Per-image standardisation with a built-in layer, so that the .keras file, the
    # SavedModel and every TFLite variant carry it without custom code.
    # epsilon well below the variance of a low-contrast scan (about 1e-3 for intensities in
    # [0, 1]), so that the exposure scale really drops out.
    x = layers.LayerNormalization(axis=(1, 2, 3), epsilon=1e-6, center=False, scale=False,
                                  name="standardize")(inputs)
    x = _compact_cnn(x, m.filters) if m.kind == "cnn" else _resnet(x, config)
    x = layers.Identity(name=FEATURES)(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(m.dropout, name="dropout")(x)
    outputs = layers.Dense(len(config.data.classes), activation="softmax",
                           name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"medical_scans_{m.kind}")


def augmentation(config: MedicalConfig) -> keras.Sequential:
    """Geometric training-time augmentation (never part of the exported model): small
    rotations, zoom, shifts, and horizontal flips only when configured."""
    t = config.train
    steps = []
    if t.horizontal_flip:
        steps.append(layers.RandomFlip("horizontal", seed=t.seed))
    if t.rotation:
        steps.append(layers.RandomRotation(t.rotation, fill_mode="reflect", seed=t.seed))
    if t.zoom:
        steps.append(layers.RandomZoom(t.zoom, fill_mode="reflect", seed=t.seed))
    if t.translation:
        steps.append(layers.RandomTranslation(t.translation, t.translation,
                                              fill_mode="reflect", seed=t.seed))
    return keras.Sequential(steps, name="augmentation")
