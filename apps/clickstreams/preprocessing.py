"""preprocessing_fn of the clickstreams app (TF / TFT ops only).

The item vocabulary is computed by TFT over the train split's next items (sorted by
frequency, items seen fewer than ``data.min_item_count`` times left out) and written as the
asset ``items``. Index spaces:
- ``label``: the next item's vocabulary index 0..V-1 (V = out of vocabulary);
- ``item_ids``: the history as model input ids, left-padded to ``data.max_history``
  (the most recent item last): 0 is padding, 1..V the vocabulary items (index + 1) and
  V + 1 the out-of-vocabulary bucket, so unknown items still count as history.
Longer histories keep their most recent items.
"""

from __future__ import annotations

import suite  # noqa: F401  (Keras policy before TensorFlow)
import tensorflow as tf
import tensorflow_transform as tft

from apps.clickstreams.config import ClickstreamConfig
from apps.clickstreams.features import (
    HISTORY, HISTORY_EVENTS, ITEM_IDS, LABEL, NEXT_EVENT, NEXT_ITEM, SESSION, TIMESTAMP,
    VOCABULARY)


def left_pad(ids: tf.SparseTensor, length: int) -> tf.Tensor:
    """[batch, length] int64: each row's last ``length`` values, right-aligned, zeros before.

    Rows are read from the sparse values in order (column indices are not trusted, so
    sparse tensors made by dropping padding from a dense tensor work too).
    """
    rows = tf.RaggedTensor.from_value_rowids(ids.values, ids.indices[:, 0],
                                             nrows=ids.dense_shape[0])
    lengths = rows.row_lengths()
    # One extra zero column so that the gather below has something to read for empty rows.
    dense = tf.concat([rows.to_tensor(0), tf.zeros([rows.nrows(), 1], ids.values.dtype)], 1)
    source = lengths[:, None] - length + tf.range(length, dtype=tf.int64)[None, :]
    valid = source >= 0
    picked = tf.gather(dense, tf.maximum(source, 0), batch_dims=1)
    return tf.where(valid, picked, tf.zeros_like(picked))


def preprocessing_fn(inputs: dict, custom_config: dict | None = None) -> dict:
    """Raw examples -> left-padded history ids and the next item's vocabulary index."""
    config = ClickstreamConfig.from_custom(custom_config)
    threshold = config.data.min_item_count
    vocabulary = tft.vocabulary(
        inputs[NEXT_ITEM], frequency_threshold=threshold if threshold > 1 else None,
        vocab_filename=VOCABULARY)
    history = inputs[HISTORY]
    indices = tft.apply_vocabulary(history, vocabulary, num_oov_buckets=1)
    shifted = tf.SparseTensor(indices.indices, indices.values + 1, indices.dense_shape)
    outputs = {ITEM_IDS: left_pad(shifted, config.data.max_history)}
    if NEXT_ITEM in inputs:
        label = tft.apply_vocabulary(inputs[NEXT_ITEM], vocabulary, num_oov_buckets=1)
        outputs[LABEL] = tf.reshape(label, [-1])
    return outputs


def raw_feature_spec(config: ClickstreamConfig) -> dict:
    """Feature spec of the raw examples written by ingestion (data.py)."""
    spec = {
        HISTORY: tf.io.VarLenFeature(tf.string),
        NEXT_ITEM: tf.io.FixedLenFeature([], tf.string),
        SESSION: tf.io.FixedLenFeature([], tf.string),
        TIMESTAMP: tf.io.FixedLenFeature([], tf.int64),
    }
    if config.data.event_column:  # no format has an event column by default
        spec[HISTORY_EVENTS] = tf.io.VarLenFeature(tf.string)
        spec[NEXT_EVENT] = tf.io.FixedLenFeature([], tf.string)
    return spec
