"""Models of the defect-images app, built from config (Keras 3; no training here).

Every model takes ``image_xf`` [size, size, channels] (the decoded image, intensities in
[0, 1]) and starts by standardising each image (zero mean, unit variance over its pixels):
lighting and camera gain change along a line, and a per-image scale carries none of that
into the model. Only built-in Keras layers are used, so the ``.keras`` file kept in the
export loads anywhere (the TFLite export, explanations) without this package's code.

- Classify mode, ``build_model``: a compact CNN, or a keras-hub ResNet or CSPNet backbone
  (randomly initialised from config) -> ``features`` (the last feature map, explained by Grad-CAM)
  -> global average pooling -> class probabilities.
- Anomaly mode, two terms measured against the good parts:
  local: a per-position distance (the Mahalanobis distance of local CNN features to the
  good parts' Gaussian, or an autoencoder's squared reconstruction error) upsampled to the
  input as ``anomaly_map`` (channel 0; channel 1 is a constant, see GUARD), whose peak after
  averaging over ``smoothing`` pixels is ``local_score``;
  global ("features" only): the Mahalanobis distance of the image's texture statistics
  (mean and standard deviation of each feature map channel) to the good parts' Gaussian,
  ``global_score``.
  Each is normalised by the validation good parts' median and spread; the ``score`` is the
  larger (``anomaly.combine``). The model's one output, ``logits`` [batch, 2], is
  (-z / 2, z / 2) with z = (score - threshold) / scale, so its argmax is the decision, its
  softmax the served probabilities, and the score comes back exactly as threshold + scale * z.
  One output keeps the model convertible and checkable as a TFLite classifier.
"""

from __future__ import annotations


import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras
import numpy as np
from keras import layers

from apps.defect_images.config import DefectConfig, input_size
from apps.defect_images.features import IMAGE_XF
from blocks.mahalanobis import Gaussian
from blocks.vision.backbones import compact_cnn, compact_cnn_stages, resnet, standardize

FEATURES = "features"  # classify: the feature map Grad-CAM explains
ANOMALY_MAP = "anomaly_map"  # anomaly: [b, size, size, 2] (the map, its int8 guard)
LOCAL_SCORE = "local_score"  # anomaly: [b, 2] the map's smoothed peak (and the guard)
GLOBAL_SCORE = "global_score"  # anomaly (features): [b, 1] the texture statistics' distance
SCORE = "score"  # anomaly: [b, 1] the score the threshold applies to
LOGITS = "logits"  # anomaly: the model output [b, 2]
RECONSTRUCTION = "reconstruction"  # anomaly (autoencoder): the decoder's output
# Below any normalised score a good part reaches: a term left out of the score (see
# set_head) is pinned here, so the graph (and the map) stays the same.
_OFF = -1.0e4
# Full-integer TFLite models are calibrated on training inputs, which in anomaly mode are
# good parts only: a tensor's int8 range would end at the largest value a good part gives,
# and a defect's larger distances would be clipped below the threshold. Constant channels of
# +-GUARD beside the whitened features (or residuals), and of 8 x the threshold beside the
# distance map, keep every range on the decision's path wide enough; they are weighted 0 in
# the sums and the logits.
GUARD = 16.0


def _input(config: DefectConfig) -> keras.KerasTensor:
    size = input_size(config)
    return keras.Input((size, size, config.model.channels), name=IMAGE_XF)


def _cspnet(x, config: DefectConfig):
    """A CSPNet backbone from keras-hub (dark stages), randomly initialised from config; its
    stem keeps the full resolution, each stage halves it."""
    import keras_hub  # noqa: PLC0415

    m = config.model
    backbone = keras_hub.models.CSPNetBackbone(
        stem_filters=max(m.filters[0] // 2, 8),
        stem_kernel_size=3,
        stem_strides=1,
        stem_padding="same",
        stackwise_depth=list(m.blocks),
        stackwise_strides=[2] * len(m.filters),
        stackwise_num_filters=list(m.filters),
        block_type="dark_block",
        stage_type="dark",
        activation="relu",
        image_shape=(m.image_size, m.image_size, m.channels),
        name="cspnet_backbone",
    )
    return backbone(x)


def build_model(config: DefectConfig) -> keras.Model:
    """Classify mode: an uncompiled model, decoded image -> probabilities of the classes."""
    m = config.model
    n_classes = len(config.data.classes)
    if n_classes < 2:
        raise ValueError(f"data.classes: expected at least two classes, got "
                         f"{list(config.data.classes)} (they are filled in from the data at "
                         "ingestion)")
    builders = {"cnn": lambda x: compact_cnn(x, m.filters),
                "resnet": lambda x: resnet(x, m.filters, m.blocks, m.image_size, m.channels),
                "cspnet": lambda x: _cspnet(x, config)}
    if m.kind not in builders:
        raise ValueError(f"model.kind: expected one of {sorted(builders)}, got {m.kind!r}")
    inputs = _input(config)
    x = builders[m.kind](standardize(inputs))
    x = layers.Identity(name=FEATURES)(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(m.dropout, name="dropout")(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"defect_images_{m.kind}")


CLASSIFIER = "classifier"  # classify with test-time orientations: the core model


def orientation_views(x, flips: bool, turns: bool) -> list:
    """``x`` [b, H, W, C] (square) in the orientations training augmented with: the 8 flips
    and 90-degree turns, the 4 flips, or the 4 turns."""
    views = [x]
    if turns:
        t = keras.ops.transpose(x, (0, 2, 1, 3))
        views += [keras.ops.flip(t, axis=2), keras.ops.flip(keras.ops.flip(x, axis=1), axis=2),
                  keras.ops.flip(t, axis=1)]
    if flips:
        views += [keras.ops.flip(v, axis=2) for v in views]
        if not turns:
            views += [keras.ops.flip(x, axis=1), keras.ops.flip(keras.ops.flip(x, axis=1),
                                                                axis=2)]
    return views


def with_test_time_orientations(core: keras.Model, config: DefectConfig) -> keras.Model:
    """The classifier's probabilities averaged over the orientations it was trained to see
    (train.flips, train.rot90): a deterministic ensemble of one model, inside the served
    and TFLite graphs (transposes and reversals only)."""
    t = config.train
    if not (t.flips or t.rot90):
        return core
    inputs = _input(config)
    wrapped = keras.Model(core.inputs[0], core.outputs[0], name=CLASSIFIER)
    views = orientation_views(inputs, t.flips, t.rot90)
    outputs = layers.Average(name="probabilities_mean")([wrapped(v) for v in views])
    return keras.Model(inputs, outputs, name=f"{core.name}_oriented")


def explained_classifier(model: keras.Model) -> keras.Model:
    """The model whose ``features`` layer Grad-CAM explains: the core of a model with
    test-time orientations, else the model itself."""
    names = {layer.name for layer in model.layers}
    return model.get_layer(CLASSIFIER) if CLASSIFIER in names else model


# --------------------------------------------------------------------------------------
# Anomaly mode


def build_feature_extractor(config: DefectConfig) -> keras.Model:
    """Decoded image -> the feature maps of every stage (two 3x3 convolutions with batch
    norm and ReLU each, max-pooled between stages): the anomaly model's features, random or
    trained on the pretext task (pretext.py)."""
    filters = config.anomaly.feature_filters
    inputs = _input(config)
    stages = compact_cnn_stages(standardize(inputs), filters, prefix="f")
    return keras.Model(inputs, stages, name="feature_extractor")


def build_pretext_model(extractor: keras.Model, n_classes: int) -> keras.Model:
    """The extractor with a head naming the alteration of an image (pretext.py)."""
    x = layers.GlobalAveragePooling2D(name="pretext_pool")(extractor.outputs[-1])
    outputs = layers.Dense(n_classes, name="pretext_logits")(x)
    return keras.Model(extractor.inputs[0], outputs, name="pretext")


def _local_features(stages: list, count: int):
    """The first ``count`` stages, average-pooled to the grid of the last of them and
    concatenated: [b, h, w, sum of their channels]."""
    chosen = stages[:count]
    grid = int(chosen[-1].shape[1])
    pooled = []
    for i, f in enumerate(chosen):
        factor = int(f.shape[1]) // grid
        pooled.append(layers.AveragePooling2D(factor, name=f"local{i}")(f) if factor > 1
                      else f)
    return pooled[0] if len(pooled) == 1 else layers.Concatenate(name="local_features")(
        pooled)


def _global_features(stages: list, count: int):
    """The mean and standard deviation of every channel of the first ``count`` stages:
    [b, 2 x their channels]."""
    parts = []
    for i, f in enumerate(stages[:count]):
        mean = layers.GlobalAveragePooling2D(name=f"global_mean{i}")(f)
        square = layers.GlobalAveragePooling2D(name=f"global_square{i}")(
            layers.Multiply(name=f"global_sq{i}")([f, f]))
        variance = keras.ops.maximum(square - mean * mean, 1e-12)
        parts += [mean, keras.ops.sqrt(variance)]
    return layers.Concatenate(name="global_features")(parts)


def feature_model(extractor: keras.Model, config: DefectConfig) -> keras.Model:
    """Decoded image -> (local features [b, h, w, c], global features [b, g]): what the
    good parts' Gaussians are fitted on."""
    a = config.anomaly
    inputs = _input(config)
    stages = extractor(inputs)
    stages = stages if isinstance(stages, (list, tuple)) else [stages]
    return keras.Model(inputs, [_local_features(stages, a.local_stages),
                                _global_features(stages, a.global_stages)],
                       name="anomaly_features")


def _guards(x, name: str):
    """Two constant channels, +GUARD and -GUARD, as wide as ``x``'s grid (see GUARD)."""
    guard = layers.Conv2D(2, 1, name=name, trainable=False)
    out = guard(x)
    guard.set_weights([np.zeros((1, 1, int(x.shape[-1]), 2), np.float32),
                       np.array([GUARD, -GUARD], np.float32)])
    return out


def _distance(squared, weights: np.ndarray):
    """[b, h, w, n] squares -> [b, h, w, 2]: their weighted sum (the distance) and a constant
    channel (its int8 range guard, set by ``set_head``)."""
    total = layers.Conv2D(2, 1, name="distance", trainable=False)
    out = total(squared)
    kernel = np.zeros((1, 1, len(weights), 2), np.float32)
    kernel[0, 0, :, 0] = weights
    total.set_weights([kernel, np.zeros(2, np.float32)])
    return out


def _local_distance(features, gaussian: Gaussian):
    """Per-position squared Mahalanobis distance [b, h, w, 2] (with its guard channel).
    Centring comes first: in int8, the rounding of a product taken before it would swamp
    the small deviations from the mean that the distance is made of."""
    components = gaussian.whitening.shape[1]
    centered = layers.Normalization(mean=gaussian.mean.astype(np.float32),
                                    variance=np.square(gaussian.std).astype(np.float32),
                                    name="center")(features)
    whiten = layers.Conv2D(components, 1, use_bias=False, name="whiten", trainable=False)
    white = layers.Concatenate(name="guarded")([whiten(centered),
                                                _guards(features, "white_guard")])
    whiten.set_weights([gaussian.whitening.astype(np.float32)[None, None]])
    squared = layers.Multiply(name="squared")([white, white])
    return _distance(squared, np.r_[np.ones(components), 0.0, 0.0])


def _global_distance(features, gaussian: Gaussian):
    """The squared Mahalanobis distance [b, 1] of the global features."""
    components = gaussian.whitening.shape[1]
    centered = layers.Normalization(mean=gaussian.mean.astype(np.float32),
                                    variance=np.square(gaussian.std).astype(np.float32),
                                    name="global_center")(features)
    whiten = layers.Dense(components, use_bias=False, name="global_whiten", trainable=False)
    white = whiten(centered)
    whiten.set_weights([gaussian.whitening.astype(np.float32)])
    squared = layers.Multiply(name="global_squared")([white, white])
    total = layers.Dense(1, use_bias=False, name=GLOBAL_SCORE, trainable=False)
    out = total(squared)
    total.set_weights([np.ones((components, 1), np.float32)])
    return out


def _head(distance, global_distance, config: DefectConfig):
    """(per-position [distance, guard], global distance or None) -> logits."""
    factor = input_size(config) // int(distance.shape[1])
    if factor > 1:
        distance = layers.UpSampling2D(factor, interpolation="bilinear", name="upsample")(
            distance)
    anomaly_map = layers.Identity(name=ANOMALY_MAP)(distance)
    k = config.anomaly.smoothing
    smoothed = layers.AveragePooling2D(k, strides=1, name="smooth")(anomaly_map) if k > 1 \
        else anomaly_map
    local = layers.GlobalMaxPooling2D(name=LOCAL_SCORE)(smoothed)
    terms = [layers.Dense(1, name="local_z", trainable=False)(local)]
    if global_distance is not None:
        terms.append(layers.Dense(1, name="global_z", trainable=False)(global_distance))
    score = layers.Maximum(name=SCORE)(terms) if len(terms) > 1 else \
        layers.Identity(name=SCORE)(terms[0])
    return layers.Dense(2, name=LOGITS, trainable=False)(score)


def set_head(model: keras.Model, *, local: tuple[float, float],
             global_: tuple[float, float] | None, combine: str, threshold: float,
             scale: float) -> None:
    """Sets the normalisations (median, spread) of the local and global terms, which of
    them make the score ("max", "local", "global"), and the decision: logits (-z / 2,
    z / 2), z = (score - threshold) / scale. The distance's int8 guard is set to 8 x the
    local distance at the threshold."""
    if not scale > 0:
        raise ValueError(f"scale: expected a positive number, got {scale}")
    names = {layer.name for layer in model.layers}
    if combine == "global" and "global_z" not in names:
        raise ValueError("anomaly.combine: 'global' needs the texture-statistics term, which "
                         "only the 'features' method has")

    def affine(name: str, norm: tuple[float, float], on: bool, width: int) -> None:
        median, spread = norm
        kernel = np.zeros((width, 1), np.float32)
        kernel[0, 0] = 1.0 / spread if on else 0.0
        bias = np.array([-median / spread if on else _OFF], np.float32)
        model.get_layer(name).set_weights([kernel, bias])

    affine("local_z", local, combine in ("max", "local"), 2)
    if "global_z" in names and global_ is not None:
        affine("global_z", global_, combine in ("max", "global"), 1)
    half = 0.5 / scale
    model.get_layer(LOGITS).set_weights([np.array([[-half, half]], np.float32),
                                         np.array([threshold * half, -threshold * half],
                                                  np.float32)])
    distance = model.get_layer("distance")
    kernel, _ = distance.get_weights()
    level = local[0] + max(threshold, 1.0) * local[1]
    distance.set_weights([kernel, np.array([0.0, 8.0 * max(level, 1e-6)], np.float32)])


def build_gaussian_model(extractor: keras.Model, local: Gaussian, global_: Gaussian | None,
                         config: DefectConfig) -> keras.Model:
    """Anomaly mode, "features": the extractor, the local and global Mahalanobis distances
    (fixed layers), then the head (``set_head`` sets its normalisations and decision)."""
    inputs = _input(config)
    features = feature_model(extractor, config)(inputs)
    distance = _local_distance(features[0], local)
    global_distance = _global_distance(features[1], global_) if global_ is not None else None
    return keras.Model(inputs, _head(distance, global_distance, config),
                       name="defect_images_gaussian")


def build_autoencoder(config: DefectConfig) -> keras.Model:
    """Anomaly mode, "autoencoder": decoded image -> reconstruction of its standardised
    pixels (stride-2 convolution stages down to ``ae_latent`` channels, transposed
    convolutions back up)."""
    a = config.anomaly
    inputs = _input(config)
    x = standardize(inputs)
    for stage, n in enumerate(a.ae_filters):
        x = layers.Conv2D(n, 3, strides=2, padding="same", name=f"enc{stage}")(x)
        x = layers.BatchNormalization(name=f"enc_bn{stage}")(x)
        x = layers.LeakyReLU(0.1, name=f"enc_act{stage}")(x)
    x = layers.Conv2D(a.ae_latent, 1, name="bottleneck")(x)
    for stage, n in enumerate(reversed(a.ae_filters)):
        x = layers.Conv2DTranspose(n, 3, strides=2, padding="same", name=f"dec{stage}")(x)
        x = layers.BatchNormalization(name=f"dec_bn{stage}")(x)
        x = layers.LeakyReLU(0.1, name=f"dec_act{stage}")(x)
    x = layers.Conv2D(config.model.channels, 3, padding="same", name=RECONSTRUCTION)(x)
    return keras.Model(inputs, x, name="autoencoder")


def build_reconstruction_model(autoencoder: keras.Model, config: DefectConfig) -> keras.Model:
    """Anomaly mode, "autoencoder": the squared error between the standardised image and
    its reconstruction, averaged over channels, then the head (local term only)."""
    channels = config.model.channels
    inputs = _input(config)
    target = standardize(inputs, name="target")  # what the autoencoder reconstructs
    error = layers.Subtract(name="residual")([target, autoencoder(inputs)])
    error = layers.Concatenate(name="guarded")([error, _guards(target, "residual_guard")])
    squared = layers.Multiply(name="squared")([error, error])
    distance = _distance(squared, np.r_[np.full(channels, 1.0 / channels), 0.0, 0.0])
    return keras.Model(inputs, _head(distance, None, config),
                       name="defect_images_autoencoder")


def anomaly_outputs(model: keras.Model) -> keras.Model:
    """The anomaly model's map [b, size, size, 2], local score [b, 2], global score [b, 1]
    (the local score where the model has none) and score [b, 1], sharing its layers."""
    names = {layer.name for layer in model.layers}
    parts = [ANOMALY_MAP, LOCAL_SCORE, GLOBAL_SCORE if GLOBAL_SCORE in names else LOCAL_SCORE,
             SCORE]
    return keras.Model(model.inputs[0], [model.get_layer(n).output for n in parts])


def anomaly_parts(model: keras.Model, images: np.ndarray, batch_size: int = 32
                  ) -> dict[str, np.ndarray]:
    """On decoded images: ``map`` [N, size, size], ``local`` and ``global`` distances [N]
    (global NaN without that term) and ``score`` [N]."""
    outputs = anomaly_outputs(model)
    has_global = GLOBAL_SCORE in {layer.name for layer in model.layers}
    parts: dict[str, list] = {"map": [], "local": [], "global": [], "score": []}
    for start in range(0, len(images), batch_size):
        m, local, glob, score = outputs(images[start:start + batch_size], training=False)
        parts["map"].append(np.asarray(m)[..., 0])
        parts["local"].append(np.asarray(local)[:, 0])
        parts["global"].append(np.asarray(glob)[:, 0] if has_global
                               else np.full(len(m), np.nan, np.float32))
        parts["score"].append(np.asarray(score)[:, 0])
    if not parts["map"]:
        size = int(model.inputs[0].shape[1])
        return {"map": np.zeros((0, size, size), np.float32),
                **{k: np.zeros((0,), np.float32) for k in ("local", "global", "score")}}
    return {k: np.concatenate(v) for k, v in parts.items()}


def map_and_score(model: keras.Model, images: np.ndarray, batch_size: int = 32
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(anomaly maps [N, size, size], scores [N]) of an anomaly model on decoded images."""
    parts = anomaly_parts(model, images, batch_size)
    return parts["map"], parts["score"]
