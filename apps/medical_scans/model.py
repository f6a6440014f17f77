"""CNNs of the medical-scans app, built from config (Keras 3; no training here).

Every model takes ``image_xf`` [size, size, channels] (the decoded image, intensities in
[0, 1]) and returns class probabilities. Its first layer standardises each image (zero mean,
unit variance over all its pixels): X-ray exposure and detector gain differ between machines
and hospitals, and a per-image scale carries none of that into the model. Histogram
equalisation or CLAHE (``model.intensity``) may come first, so that the exposure curve drops
out as well. The last feature
map is the output of a layer named ``features``, which Grad-CAM explains
(blocks/vision/gradcam.py).
"""

from __future__ import annotations

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras
from keras import layers

from apps.medical_scans.config import MedicalConfig
from apps.medical_scans.features import IMAGE_XF
from blocks.vision.backbones import compact_cnn, resnet, standardize
from blocks.vision.intensity import IntensityNormalization

FEATURES = "features"


def build_model(config: MedicalConfig) -> keras.Model:
    """Returns an uncompiled model: standardised image -> probabilities of the classes."""
    m = config.model
    if m.kind not in ("cnn", "resnet"):
        raise ValueError(f"model.kind: expected 'cnn' or 'resnet', got {m.kind!r}")
    inputs = keras.Input((m.image_size, m.image_size, m.channels), name=IMAGE_XF)
    x = inputs
    if m.intensity != "none":
        x = IntensityNormalization(m.intensity, tiles=m.clahe_tiles, clip_limit=m.clahe_clip,
                                   name="intensity")(x)
    x = standardize(x)
    x = (compact_cnn(x, m.filters) if m.kind == "cnn"
         else resnet(x, m.filters, m.blocks, m.image_size, m.channels))
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
