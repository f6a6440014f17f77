"""Intensity normalisation inside the model graph: global histogram equalisation and CLAHE.

Images taken on different scanners (or with different exposure, window/level, detector
gain) differ by a roughly monotone remapping of their grey levels. Histogram equalisation
maps each pixel to the fraction of pixels no brighter than it, which no monotone remapping
changes, so the network sees the same input whatever the scanner did. CLAHE (contrast-limited
adaptive histogram equalisation) does the same per tile, with each tile's contrast gain
limited, and is the usual normaliser for chest X-rays.

Both work on float batches ``[batch, height, width, channels]`` with intensities in [0, 1],
per image and per channel (an RGB image is equalised channel by channel, not through its
luminance), and return float32 in [0, 1]. They use plain TensorFlow ops only (no numpy at
run time, no ``tf.py_function``), work in graph mode and under XLA, take any batch size, and
are deterministic: histograms are sums of ones (exact in float32), built with ``scatter_nd``,
and look-ups are ``gather``s, so the layer converts to TFLite with builtin ops only
(SCATTER_ND, CUMSUM, GATHER, MIRROR_PAD and element-wise ops).

Binning: a pixel of intensity ``x`` falls in bin ``clip(floor(x * bins), 0, bins - 1)``;
with ``bins=256`` an 8-bit image ``u / 255`` falls exactly in bin ``u``. Values outside
[0, 1] are counted in the first or last bin.

Import this module before loading a saved model that holds the layer (it registers
``suite>IntensityNormalization``).
"""

from __future__ import annotations

import math
from typing import Any

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras
import tensorflow as tf

MODES = ("none", "equalize", "clahe")


def _check_bins(bins: int) -> int:
    if int(bins) != bins or not 2 <= bins <= 65536:
        raise ValueError(f"bins: expected an integer in [2, 65536], got {bins!r}")
    return int(bins)


def _check_tiles(tiles: int | tuple[int, int]) -> tuple[int, int]:
    pair = (tiles, tiles) if isinstance(tiles, int | float) else tuple(tiles)
    if len(pair) != 2 or any(int(t) != t or t < 1 for t in pair):
        raise ValueError(
            f"tiles: expected a positive integer or a (rows, cols) pair of them, got {tiles!r}"
        )
    return int(pair[0]), int(pair[1])


def _channels_first(images: tf.Tensor | Any) -> tuple[tf.Tensor, tf.Tensor, int]:
    """[B, H, W, C] -> ([B*C, H, W] float32, dynamic shape of the input, C)."""
    images = tf.convert_to_tensor(images)
    if images.shape.rank != 4:
        raise ValueError(
            f"expected images [batch, height, width, channels], got shape {images.shape}"
        )
    channels = images.shape[-1]
    if channels is None:
        raise ValueError(
            f"the channel axis must be known when the graph is built, got shape {images.shape}"
        )
    images = tf.cast(images, tf.float32)
    shape = tf.shape(images)
    # Static sizes where known, so that the planes keep a static height and width.
    height, width = (images.shape[i] if images.shape[i] is not None else shape[i] for i in (1, 2))
    planes = tf.transpose(images, [0, 3, 1, 2])
    planes = tf.reshape(planes, tf.stack([shape[0] * channels, height, width]))
    planes.set_shape([None, images.shape[1], images.shape[2]])
    return planes, shape, channels


def _channels_last(planes: tf.Tensor, shape: tf.Tensor, channels: int) -> tf.Tensor:
    """[B*C, H, W] -> [B, H, W, C]."""
    planes = tf.reshape(planes, tf.stack([shape[0], channels, shape[1], shape[2]]))
    return tf.transpose(planes, [0, 2, 3, 1])


def _bin_index(planes: tf.Tensor, bins: int) -> tf.Tensor:
    """Bin of each intensity in [0, 1] (int32, in [0, bins - 1])."""
    scaled = tf.clip_by_value(tf.floor(planes * float(bins)), 0.0, float(bins - 1))
    return tf.cast(scaled, tf.int32)


def _histograms(flat_bins: tf.Tensor, n_histograms: tf.Tensor, bins: int) -> tf.Tensor:
    """Counts of each index of ``flat_bins`` (int32 indices into ``n_histograms * bins``
    slots, any shape) as float32 [n_histograms, bins].

    ``scatter_nd`` adds the updates of repeated indices, and sums of ones are exact in
    float32 below 2**24 pixels per histogram, so the result does not depend on the order in
    which the additions happen (parallel or atomic adds give the same counts)."""
    indices = tf.reshape(flat_bins, [-1, 1])
    ones = tf.ones_like(indices[:, 0], dtype=tf.float32)
    counts = tf.scatter_nd(indices, ones, tf.reshape(n_histograms * bins, [1]))
    return tf.reshape(counts, tf.stack([n_histograms, bins]))


def equalize(images: tf.Tensor | Any, bins: int = 256) -> tf.Tensor:
    """Global histogram equalisation of each image and channel of a batch.

    The mapping is OpenCV's ``equalizeHist`` (and the textbook one) in float: a pixel in bin
    ``b`` becomes ``(cdf(b) - cdf_min) / (n - cdf_min)``, where ``cdf`` is the inclusive
    cumulative histogram of its image and channel, ``cdf_min`` the count of the darkest
    occupied bin and ``n`` the number of pixels, so the darkest grey level maps to 0 and the
    brightest to 1. An image channel with a single grey level has nothing to equalise and
    comes back unchanged (clipped to [0, 1]), as in OpenCV and PIL.

    Args:
        images: float [batch, height, width, channels], intensities in [0, 1]; batch, height
            and width may be dynamic.
        bins: number of histogram bins over [0, 1].

    Returns:
        float32 [batch, height, width, channels] in [0, 1].
    """
    bins = _check_bins(bins)
    planes, shape, channels = _channels_first(images)
    n_planes = shape[0] * channels
    q = tf.reshape(_bin_index(planes, bins), tf.stack([n_planes, -1]))  # [N, P]
    flat = q + tf.range(n_planes)[:, tf.newaxis] * bins
    cdf = tf.cumsum(_histograms(flat, n_planes, bins), axis=-1)  # [N, bins]
    n_pixels = cdf[:, -1:]
    # The cdf is nondecreasing, so its smallest positive value is the darkest bin's count.
    cdf_min = tf.reduce_min(tf.where(cdf > 0.0, cdf, n_pixels), axis=-1, keepdims=True)
    spread = n_pixels - cdf_min
    lut = tf.clip_by_value((cdf - cdf_min) / tf.maximum(spread, 1.0), 0.0, 1.0)
    mapped = tf.gather(tf.reshape(lut, [-1]), flat)  # [N, P]
    unchanged = tf.clip_by_value(tf.reshape(planes, tf.shape(mapped)), 0.0, 1.0)
    out = tf.where(spread > 0.0, mapped, unchanged)
    return _channels_last(tf.reshape(out, tf.shape(planes)), shape, channels)


def _interpolation(size: int, tile: int, n_tiles: int) -> tuple[list[int], list[int], list[float]]:
    """For each pixel along one axis: the two neighbouring tiles whose centres surround it
    and the weight of the second one (OpenCV's ``x / tile - 0.5``, clamped at the borders,
    where a pixel takes its own tile's mapping only)."""
    first, second, weight = [], [], []
    for i in range(size):
        position = i / tile - 0.5
        low = math.floor(position)
        first.append(min(max(low, 0), n_tiles - 1))
        second.append(min(max(low + 1, 0), n_tiles - 1))
        weight.append(position - low)
    return first, second, weight


def _clip_and_redistribute(hist: tf.Tensor, limit: int, bins: int) -> tf.Tensor:
    """Clips histograms [M, bins] at ``limit`` counts and gives the clipped counts back,
    exactly as OpenCV's CLAHE does: ``excess // bins`` to every bin, then one more count to
    each of the ``excess % bins`` bins ``0, step, 2 * step, ...`` with ``step = max(bins //
    (excess % bins), 1)``. Counts are whole numbers, so this is integer arithmetic on exact
    float32 sums; the bin positions use int32."""
    limit_f = float(limit)
    excess = tf.reduce_sum(tf.nn.relu(hist - limit_f), axis=-1, keepdims=True)  # [M, 1]
    excess = tf.cast(excess, tf.int32)
    batch = excess // bins
    residual = excess - batch * bins
    step = tf.maximum(bins // tf.maximum(residual, 1), 1)
    position = tf.range(bins)[tf.newaxis, :]
    extra = tf.logical_and(tf.equal(position % step, 0), position // step < residual)
    return tf.minimum(hist, limit_f) + tf.cast(batch, tf.float32) + tf.cast(extra, tf.float32)


def clahe(
    images: tf.Tensor | Any,
    tiles: int | tuple[int, int] = 8,
    clip_limit: float = 2.0,
    bins: int = 256,
) -> tf.Tensor:
    """Contrast-limited adaptive histogram equalisation (Zuiderveld, Graphics Gems IV, 1994),
    per image and channel, with OpenCV's conventions (``cv2.createCLAHE(clipLimit,
    tileGridSize)``).

    - Tiles: the image is cut into ``tiles`` (rows, cols) tiles. When its height or width is
      not a multiple of the tile count, it is first padded at the bottom / right by
      reflection (without repeating the edge pixel, OpenCV's BORDER_REFLECT_101) by ``tiles
      - size % tiles`` pixels on each axis, which makes both multiples of the tile count;
      the padding counts in the last tiles' histograms and is cropped off the output. As in
      OpenCV, an axis that already divides evenly is then padded too (by ``tiles``), so
      that the output equals ``cv2.createCLAHE`` for every image size.
    - Clip limit: ``clip_limit`` is a multiple of the mean bin count, as OpenCV's
      ``clipLimit``: a tile of ``n`` pixels has its bins clipped at ``max(floor(clip_limit *
      n / bins), 1)`` counts. (scikit-image's ``equalize_adapthist(clip_limit=c)`` clips at
      ``c * n`` instead, so ``c = clip_limit / bins``.) ``clip_limit <= 0`` turns clipping
      off (plain adaptive histogram equalisation).
    - Redistribution: the clipped excess of a tile is handed back as OpenCV does, in one
      pass: ``excess // bins`` counts to every bin, and one count more to ``excess % bins``
      evenly spaced bins from the first one. (Zuiderveld and scikit-image fill only the bins
      below the limit, and repeat until the excess is gone; at strong clipping their output
      has a little less contrast.)
    - Mapping: a tile maps bin ``b`` to ``cdf(b) / n`` with the inclusive cumulative
      histogram (Zuiderveld, OpenCV, scikit-image), so its darkest occupied bin does not
      go to 0.
    - Interpolation: each pixel blends the mappings of the four tiles whose centres surround
      it, bilinearly; pixels outside the outermost tile centres use the nearest tiles only.

    Args:
        images: float [batch, height, width, channels], intensities in [0, 1]; the batch may
            be dynamic, height, width and channels must be known when the graph is built
            (at least one pixel per tile).
        tiles: tile grid, an int for a square grid or (rows, cols).
        clip_limit: contrast limit as a multiple of the mean bin count (OpenCV's).
        bins: number of histogram bins over [0, 1].

    Returns:
        float32 [batch, height, width, channels] in [0, 1].
    """
    bins = _check_bins(bins)
    tiles_y, tiles_x = _check_tiles(tiles)
    planes, shape, channels = _channels_first(images)
    height, width = planes.shape[1], planes.shape[2]
    if height is None or width is None:
        raise ValueError(
            f"clahe: image height and width must be known when the graph is "
            f"built, got planes of shape {planes.shape}"
        )
    if height < tiles_y or width < tiles_x:
        raise ValueError(
            f"clahe: tiles ({tiles_y}, {tiles_x}) need an image of at least that "
            f"many pixels, got {height}x{width}"
        )
    pad_y = pad_x = 0
    if height % tiles_y or width % tiles_x:
        # OpenCV's rule, kept for parity: once either axis needs padding, both get
        # ``tiles - size % tiles`` (a full extra row / column of tiles' worth on an axis that
        # divides evenly).
        pad_y, pad_x = tiles_y - height % tiles_y, tiles_x - width % tiles_x
    if pad_y >= height or pad_x >= width:
        raise ValueError(
            f"clahe: a {height}x{width} image is too small to pad by reflection "
            f"to a multiple of tiles ({tiles_y}, {tiles_x})"
        )
    tile_h, tile_w = (height + pad_y) // tiles_y, (width + pad_x) // tiles_x
    tile_pixels = tile_h * tile_w
    n_tiles = tiles_y * tiles_x
    n_planes = shape[0] * channels
    q = _bin_index(planes, bins)  # [N, H, W]
    padded = q
    if pad_y or pad_x:
        padded = tf.pad(q, [[0, 0], [0, pad_y], [0, pad_x]], mode="REFLECT")

    # Histogram slot of every padded pixel: (plane, tile, bin).
    rows = tf.range(tile_h * tiles_y) // tile_h
    cols = tf.range(tile_w * tiles_x) // tile_w
    tile_of_pixel = rows[:, tf.newaxis] * tiles_x + cols[tf.newaxis, :]
    plane_offset = tf.range(n_planes)[:, tf.newaxis, tf.newaxis] * (n_tiles * bins)
    hist = _histograms(plane_offset + tile_of_pixel * bins + padded, n_planes * n_tiles, bins)

    if clip_limit > 0:
        limit = max(math.floor(clip_limit * tile_pixels / bins), 1)
        hist = _clip_and_redistribute(hist, limit, bins)
    lut = tf.minimum(tf.cumsum(hist, axis=-1) / float(tile_pixels), 1.0)
    lut = tf.reshape(lut, [-1])  # [(plane, tile, bin)]

    y1, y2, wy = _interpolation(height, tile_h, tiles_y)
    x1, x2, wx = _interpolation(width, tile_w, tiles_x)
    wy = tf.constant(wy, tf.float32)[:, tf.newaxis]
    wx = tf.constant(wx, tf.float32)[tf.newaxis, :]
    base = plane_offset + q

    def mapped(tile_rows: list[int], tile_cols: list[int]) -> tf.Tensor:
        slot = (
            tf.constant(tile_rows)[:, tf.newaxis] * tiles_x + tf.constant(tile_cols)[tf.newaxis, :]
        ) * bins
        return tf.gather(lut, base + slot)

    top = mapped(y1, x1) * (1.0 - wx) + mapped(y1, x2) * wx
    bottom = mapped(y2, x1) * (1.0 - wx) + mapped(y2, x2) * wx
    out = tf.clip_by_value(top * (1.0 - wy) + bottom * wy, 0.0, 1.0)
    return _channels_last(out, shape, channels)


@keras.saving.register_keras_serializable(package="suite_blocks")
class IntensityNormalization(keras.layers.Layer):
    """Intensity normalisation of image batches [batch, height, width, channels] in [0, 1]
    inside the model: ``mode="none"`` (identity, as float32), ``"equalize"``
    (:func:`equalize`) or ``"clahe"`` (:func:`clahe` with ``tiles`` and ``clip_limit``).

    Deterministic, has no weights, behaves the same in training and inference, runs on a
    batch of any size and converts to TFLite with builtin ops. Computed in float32 whatever
    the dtype policy (pixel counts of large images overflow float16).
    """

    def __init__(
        self,
        mode: str,
        *,
        tiles: int | tuple[int, int] = 8,
        clip_limit: float = 2.0,
        bins: int = 256,
        **kwargs: Any,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        self.mode = mode
        self.tiles = _check_tiles(tiles)
        self.clip_limit = float(clip_limit)
        self.bins = _check_bins(bins)

    def build(self, input_shape: tuple) -> None:
        # Fail when the model is built, not at its first batch.
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                f"{self.name}: expected images [batch, height, width, channels] "
                f"with a known channel count, got shape {tuple(input_shape)}"
            )
        if self.mode == "clahe":
            height, width = input_shape[1], input_shape[2]
            if height is None or width is None:
                raise ValueError(
                    f"{self.name}: clahe: image height and width must be known "
                    f"when the graph is built, got shape {tuple(input_shape)}"
                )
            if height < self.tiles[0] or width < self.tiles[1]:
                raise ValueError(
                    f"{self.name}: clahe: tiles {self.tiles} need an image of at "
                    f"least that many pixels, got {height}x{width}"
                )
        super().build(input_shape)

    def call(self, images: tf.Tensor) -> tf.Tensor:
        if self.mode == "equalize":
            return equalize(images, bins=self.bins)
        if self.mode == "clahe":
            return clahe(images, tiles=self.tiles, clip_limit=self.clip_limit, bins=self.bins)
        return tf.cast(images, tf.float32)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "mode": self.mode,
            "tiles": list(self.tiles),
            "clip_limit": self.clip_limit,
            "bins": self.bins,
        }
