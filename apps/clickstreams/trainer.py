"""Training of the clickstreams models: a plain ``train()`` and the pipeline's ``fit`` hook.

The input pipeline reads raw examples, applies the TFT transform graph (vocabulary lookup,
padding) and drops the few train examples whose next item is outside the vocabulary (no
model could predict it). As in SASRec and GRU4Rec, every position of a history is trained
to predict the item after it (the history's next item for the last position), which the
causal models allow; serving scores the last position. Full softmax cross-entropy scores
every vocabulary item; the sampled softmax (``train.loss="sampled"``) scores the true item
against ``train.num_sampled`` log-uniformly drawn items per batch, which suits large
vocabularies (TFT sorts the vocabulary by frequency, as the log-uniform sampler assumes).
"""

from __future__ import annotations

from collections.abc import Sequence

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras
import numpy as np
import tensorflow as tf

from apps.clickstreams.config import ClickstreamConfig
from apps.clickstreams.features import HISTORY, ITEM_IDS, LABEL, VOCABULARY
from apps.clickstreams.model import (
    build_model, item_embeddings, sequence_states, set_popularity)
from pipelines.trainer import Trained, TrainerInputs
from serving.export import ExportSpec, Postprocess
from suite import distribute
from suite.examples_io import raw_dataset
from suite.training import tensorboard


def top_k_outputs(vocabulary: Sequence[bytes | str], k: int) -> Postprocess:
    """Outputs of a ranker whose Keras model returns one score per vocabulary item: the
    ``k`` best item ids (strings, looked up in the graph) and their softmax probabilities."""
    names = tf.constant([v.decode() if isinstance(v, bytes) else v for v in vocabulary])
    k = min(k, len(vocabulary))

    def postprocess(scores: tf.Tensor) -> dict[str, tf.Tensor]:
        top = tf.math.top_k(tf.nn.softmax(scores, axis=-1), k=k)
        return {"items": tf.gather(names, top.indices), "scores": top.values}

    return postprocess


def export_spec(config: ClickstreamConfig, tf_transform_output) -> ExportSpec:
    """What the served model takes (raw item id strings) and returns (top-k ids, scores)."""
    vocabulary = tf_transform_output.vocabulary_by_name(VOCABULARY)
    return ExportSpec(serving_features=(HISTORY,), model_inputs=(ITEM_IDS,),
                      postprocess=top_k_outputs(vocabulary, config.serving.top_k))


def vocabulary_size(tf_transform_output) -> int:
    """Items in the TFT item vocabulary (the model's output size)."""
    return int(tf_transform_output.vocabulary_size_by_name(VOCABULARY))


def transformed_arrays(files: Sequence[str], tf_transform_output,
                       batch_size: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """(item_ids int32 ``[n, max_history]``, label ``[n]``) of the raw examples through the
    TFT graph, without out-of-vocabulary labels.

    The TFT layer runs eagerly on large batches: inside a tf.data map it is traced again
    for every dataset, which costs far more than transforming click examples (a few ints
    each) takes. The arrays are held in memory, as a dataset cache would hold them.
    """
    raw_spec = tf_transform_output.raw_feature_spec()
    tft_layer = tf_transform_output.transform_features_layer()
    n_items = vocabulary_size(tf_transform_output)
    ids, labels = [], []
    for serialized in raw_dataset(files).batch(batch_size):
        transformed = tft_layer(tf.io.parse_example(serialized, raw_spec))
        ids.append(transformed[ITEM_IDS].numpy().astype(np.int32))
        labels.append(transformed[LABEL].numpy())
    ids_array, labels_array = np.concatenate(ids), np.concatenate(labels)
    known = labels_array < n_items
    return ids_array[known], labels_array[known]


def position_targets(ids: np.ndarray, labels: np.ndarray, n_items: int) -> np.ndarray:
    """The vocabulary index of the item after each position ``[n, max_history]``: the next
    input item, or the label for the last position; -1 where there is nothing to learn
    (padding, or an unknown next item)."""
    following = np.concatenate([ids[:, 1:].astype(np.int64) - 1, labels[:, None]], axis=1)
    known = (ids > 0) & (following >= 0) & (following < n_items)
    return np.where(known, following, -1).astype(np.int32)


def positions_loss(model: keras.Model, n_items: int, loss: str, num_sampled: int = 0):
    """A Keras loss on (position targets, sequence states) that scores the items with the
    model's own item embedding: the mean cross-entropy over the positions with a target,
    full or sampled softmax."""
    table = item_embeddings(model)
    num_sampled = max(1, min(num_sampled, n_items - 1))

    def loss_fn(targets, states):
        # Keras hands targets over as floats, shaped like the states' leading dimensions.
        targets = tf.reshape(tf.cast(targets, tf.int64), [-1])
        states = tf.reshape(states, [-1, tf.shape(states)[-1]])
        keep = targets >= 0
        targets, states = tf.boolean_mask(targets, keep), tf.boolean_mask(states, keep)
        weights = table.value[1:n_items + 1]  # rows of the vocabulary items
        if loss == "full":
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=targets, logits=tf.matmul(states, weights, transpose_b=True))
        else:
            ce = tf.nn.sampled_softmax_loss(
                weights=weights, biases=tf.zeros([n_items]), labels=targets[:, None],
                inputs=states, num_sampled=num_sampled, num_classes=n_items)
        return tf.reduce_mean(ce)

    return loss_fn


def train(train_data: tuple[np.ndarray, np.ndarray],
          eval_data: tuple[np.ndarray, np.ndarray] | None, config: ClickstreamConfig,
          n_items: int, *, verbose: int = 2, log_dir: str | None = None) -> keras.Model:
    """Builds and fits the configured model on (item_ids, label) arrays; returns the scoring
    model, its empty-history popularity set from the train labels."""
    cfg = config.check().train
    plan = distribute.plan(cfg)
    if cfg.jit_compile and cfg.loss == "sampled":
        raise ValueError("train.jit_compile: the sampled softmax has no XLA kernel; use "
                         "train.loss \"full\" or leave jit_compile null")
    keras.utils.set_random_seed(cfg.seed)
    ids, labels = train_data
    train_ds = plan.full_batches(
        tf.data.Dataset.from_tensor_slices((ids, position_targets(ids, labels, n_items)))
        .shuffle(len(labels), seed=cfg.seed, reshuffle_each_iteration=True)
        .batch(plan.batch_size), len(labels)).prefetch(tf.data.AUTOTUNE)
    eval_ds = None
    if eval_data is not None:
        eval_ds = tf.data.Dataset.from_tensor_slices(
            (eval_data[0], position_targets(*eval_data, n_items))).batch(plan.batch_size)
    with plan.scope():
        model = build_model(config, n_items)
        set_popularity(model, np.bincount(labels, minlength=n_items))
        fitted = sequence_states(model)
        # XLA only when asked for (the candidate sampler has no XLA kernel).
        plan.compile(fitted, float32=(model,), jit_compile=bool(cfg.jit_compile),
                     optimizer=keras.optimizers.Adam(plan.learning_rate),
                     loss=positions_loss(model, n_items, cfg.loss, cfg.num_sampled))
    fitted.fit(train_ds, validation_data=eval_ds, epochs=cfg.epochs, verbose=verbose,
               callbacks=tensorboard(log_dir))
    return model


def fit(inputs: TrainerInputs, config: ClickstreamConfig) -> Trained:
    """The pipeline's hook: transformed train / eval arrays -> train() -> the top-k ranker.
    The plan comes first: a multi-worker strategy must exist before TensorFlow runs an op."""
    distribute.plan(config.train)
    tft_output = inputs.transform_output
    model = train(transformed_arrays(inputs.train_files, tft_output),
                  transformed_arrays(inputs.eval_files, tft_output), config,
                  vocabulary_size(tft_output), log_dir=inputs.log_dir)
    return Trained(model, export_spec(config, tft_output))
