"""Next-item models of the clickstreams app, built from config with Keras 3 (no training here).

Both kinds map left-padded history ids ``[batch, max_history]`` (0 padding, 1..V items,
V + 1 unknown; see preprocessing.py) to one score (logit) per vocabulary item ``[batch, V]``
(column j = vocabulary index j). The item embedding is shared by the input and the output
(keras-hub ``ReversibleEmbedding``): an item's score is the dot product of the sequence
representation with the item's own embedding. An empty history has no representation; the
model then returns the log-popularity of the items (a non-trainable table set by the
trainer from the train split), so every consumer of the model, the .tflite files included,
recommends the most popular items for it. Only Keras and keras-hub layers and ``keras.ops``
are used, so the saved ``.keras`` file loads without this module.
"""

from __future__ import annotations

import dataclasses

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras
import keras_hub
import numpy as np
from keras import layers, ops

from apps.clickstreams.config import MODEL_KINDS, ClickstreamConfig, ModelConfig
from apps.clickstreams.features import ITEM_IDS

EMBEDDING = "item_embedding"
SEQUENCE_STATES = "sequence_states"
TRANSITION = "item_transition"
POPULARITY = "popularity"


def build_model(config: ClickstreamConfig, n_items: int) -> keras.Model:
    """Returns an uncompiled model: history ids -> scores over the ``n_items`` vocabulary.

    Both compute one state per position ``[batch, max_history, dim]`` (layer
    ``sequence_states``; position t sees items up to t only), and the last position's state
    scores the items. Training scores every position's next item (trainer.py).
    sasrec: item + learned position embeddings, ``model.num_blocks`` pre-norm causal
    self-attention blocks (keras-hub ``TransformerDecoder`` without cross-attention, padding
    masked) and a final layer norm (Kang & McAuley, ICDM 2018).
    gru: a GRU over the item embeddings, its states projected to the embedding size
    (GRU4Rec-style, Hidasi et al., ICLR 2016).
    With ``model.transition``, each position's state also gets its item's transition vector
    (layer ``item_transition``): a direct, asymmetric item -> next-item path beside the
    sequence encoder (as FPMC's and STAMP's last-item terms).
    """
    m, length = config.model, config.data.max_history
    if m.kind not in MODEL_KINDS:
        raise ValueError(f"model.kind: expected one of {MODEL_KINDS}, got {m.kind!r}")
    if n_items < 1:
        raise ValueError(f"n_items: expected a non-empty vocabulary, got {n_items}")
    ids = keras.Input((length,), dtype="int32", name=ITEM_IDS)
    embedding = keras_hub.layers.ReversibleEmbedding(
        n_items + 2, m.embedding_dim, tie_weights=True, name=EMBEDDING)
    x = embedding(ids)
    present = ops.greater(ids, 0)
    encoded = "encoder_states" if m.transition else SEQUENCE_STATES
    if m.kind == "sasrec":
        x = layers.Add(name="add_positions")(
            [x, keras_hub.layers.PositionEmbedding(length, name="position_embedding")(x)])
        x = layers.Dropout(m.dropout, name="embedding_dropout")(x)
        for b in range(m.num_blocks):
            x = keras_hub.layers.TransformerDecoder(
                m.intermediate_dim, m.num_heads, dropout=m.dropout, normalize_first=True,
                name=f"causal_block{b}")(x, decoder_padding_mask=present)
        states = layers.LayerNormalization(epsilon=1e-5, name=encoded)(x)
    else:
        # Unrolled: histories are short, and the TFLite converter cannot lower the loop of a
        # GRU with a dynamic batch.
        x = layers.GRU(m.gru_units, return_sequences=True, unroll=True, name="gru")(x)
        x = layers.Dropout(m.dropout, name="gru_dropout")(x)
        states = layers.Dense(m.embedding_dim, name=encoded)(x)
    if m.transition:
        states = layers.Add(name=SEQUENCE_STATES)(
            [states, layers.Embedding(n_items + 2, m.embedding_dim, name=TRANSITION)(ids)])
    vector = states[:, -1, :]  # left padding: the most recent item is last
    # Columns 1..V of the reversed embedding are the vocabulary items (0 is padding, V + 1
    # the unknown-item bucket: never recommended).
    logits = embedding(vector, reverse=True)[:, 1:n_items + 1]
    prior = layers.Embedding(1, n_items, trainable=False, embeddings_initializer="zeros",
                             name=POPULARITY)(ops.zeros_like(ids[:, :1]))[:, 0, :]
    has_history = ops.any(present, axis=1, keepdims=True)
    scores = ops.where(has_history, logits, prior)
    return keras.Model(ids, scores, name=f"clickstreams_{m.kind}")


def set_popularity(model: keras.Model, counts: np.ndarray) -> None:
    """Stores log-popularity from next-item counts per vocabulary index (what an empty
    history scores); unseen items get a count of one half."""
    counts = np.asarray(counts, dtype=np.float64)
    log_prior = np.log(np.maximum(counts, 0.5) / max(counts.sum(), 1.0))
    model.get_layer(POPULARITY).set_weights([log_prior[None, :].astype(np.float32)])


def sequence_states(model: keras.Model) -> keras.Model:
    """The part of a built model that maps history ids to the per-position states
    ``[batch, max_history, dim]`` (for training losses that score the items themselves)."""
    return keras.Model(model.inputs, model.get_layer(SEQUENCE_STATES).output)


def item_embeddings(model: keras.Model):
    """The shared item embedding table ``[V + 2, dim]`` (row j + 1 = vocabulary index j)."""
    return model.get_layer(EMBEDDING).embeddings


def student(teacher: keras.Model) -> keras.Model:
    """The distillation student (serving.distill) of a ranker ``teacher`` (history ids in,
    scores over the vocabulary out): SASRec with an eighth of the embedding width (at least
    8), one block with one head, and the teacher's popularity prior for empty histories.
    The item embeddings hold nearly all of a ranker's weights, so the width is what makes
    it small (so it has no transition table); one block still attends over the whole
    history."""
    embedding = teacher.get_layer(EMBEDDING)
    dim = max(8, embedding.output_dim // 8)
    config = ClickstreamConfig()
    config = dataclasses.replace(
        config, data=dataclasses.replace(config.data, max_history=teacher.inputs[0].shape[1]),
        model=ModelConfig(kind="sasrec", embedding_dim=dim, num_blocks=1, num_heads=1,
                          intermediate_dim=2 * dim, dropout=0.1, transition=False))
    model = build_model(config, embedding.input_dim - 2)
    model.get_layer(POPULARITY).set_weights(teacher.get_layer(POPULARITY).get_weights())
    return keras.Model(model.inputs, model.outputs, name="clickstreams_student")
