"""Training of the clickstreams models: a plain ``train()`` and the pipeline's ``fit`` hook.

The input pipeline streams the raw examples, applies the TFT transform graph (vocabulary
lookup, padding) one chunk at a time and drops the few train examples whose next item is
outside the vocabulary (no model could predict it). Memory is bounded by the shuffle buffer
(``train.shuffle_buffer`` examples), the batch and the model, not by the log's length. As in
SASRec and GRU4Rec, every position of a history is trained to predict the item after it (the
history's next item for the last position), which the causal models allow; serving scores
the last position. Full softmax cross-entropy scores every vocabulary item; the sampled
softmax (``train.loss="sampled"``) scores the true item against ``train.num_sampled``
log-uniformly drawn items per batch, which suits large vocabularies (TFT sorts the
vocabulary by frequency, as the log-uniform sampler assumes).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras
import numpy as np
import tensorflow as tf

from apps.clickstreams.config import ClickstreamConfig, TrainConfig
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


def transformed_chunks(files: Sequence[str], tf_transform_output, batch_size: int = 2048
                       ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(item_ids int32 ``[n, max_history]``, label int64 ``[n]``) of the raw examples
    through the TFT graph, ``batch_size`` raw examples at a time, without
    out-of-vocabulary labels.

    The TFT layer runs eagerly on large batches: inside a tf.data map it is traced again
    for every dataset, which costs far more than transforming click examples (a few ints
    each) takes."""
    raw_spec = tf_transform_output.raw_feature_spec()
    tft_layer = tf_transform_output.transform_features_layer()
    n_items = vocabulary_size(tf_transform_output)
    for serialized in raw_dataset(files).batch(batch_size):
        transformed = tft_layer(tf.io.parse_example(serialized, raw_spec))
        ids = transformed[ITEM_IDS].numpy().astype(np.int32)
        labels = transformed[LABEL].numpy().astype(np.int64)
        known = labels < n_items
        yield ids[known], labels[known]


def streamed_examples(files: Sequence[str], tf_transform_output) -> tf.data.Dataset:
    """(item_ids ``[max_history]``, label) examples of ``transformed_chunks``, read from the
    files again at each pass (one chunk in memory at a time)."""
    length = tf_transform_output.transformed_feature_spec()[ITEM_IDS].shape[-1]
    return tf.data.Dataset.from_generator(
        lambda: transformed_chunks(files, tf_transform_output),
        output_signature=(tf.TensorSpec([None, length], tf.int32),
                          tf.TensorSpec([None], tf.int64))).unbatch()


def position_targets(ids, labels, n_items: int) -> tf.Tensor:
    """The vocabulary index of the item after each position ``[n, max_history]``: the next
    input item, or the label for the last position; -1 where there is nothing to learn
    (padding, or an unknown next item)."""
    ids = tf.convert_to_tensor(ids)
    following = tf.concat([tf.cast(ids[:, 1:], tf.int64) - 1,
                           tf.cast(labels, tf.int64)[:, None]], axis=1)
    known = (ids > 0) & (following >= 0) & (following < n_items)
    return tf.cast(tf.where(known, following, -1), tf.int32)


def label_counts(examples: tf.data.Dataset, n_items: int) -> np.ndarray:
    """How often each vocabulary item is the label of ``examples`` (one pass)."""
    def add(counts, batch):
        return counts + tf.math.bincount(tf.cast(batch[1], tf.int32), minlength=n_items,
                                         maxlength=n_items, dtype=tf.int64)

    return examples.batch(8192).reduce(tf.zeros([n_items], tf.int64), add).numpy()


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


def training_batches(examples: tf.data.Dataset, n_items: int, cfg: TrainConfig,
                     plan: distribute.Plan) -> tuple[tf.data.Dataset, np.ndarray]:
    """The training batches of (item_ids, position targets) from (item_ids, label)
    ``examples``, shuffled in a buffer of ``train.shuffle_buffer`` (all the memory the
    data take when ``examples`` stream), and how often each item is a label (one pass
    first, which also counts the examples)."""
    counts = label_counts(examples, n_items)
    batches = (examples.shuffle(cfg.shuffle_buffer, seed=cfg.seed,
                                reshuffle_each_iteration=True)
               .batch(plan.batch_size)
               .map(lambda ids, labels: (ids, position_targets(ids, labels, n_items))))
    return (plan.full_batches(batches, int(counts.sum())).prefetch(tf.data.AUTOTUNE),
            counts)


def train(train_data: tf.data.Dataset, eval_data: tf.data.Dataset | None,
          config: ClickstreamConfig, n_items: int, *, verbose: int = 2,
          log_dir: str | None = None) -> keras.Model:
    """Builds and fits the configured model on (item_ids, label) examples (e.g.
    ``streamed_examples``, or arrays through ``from_tensor_slices``); returns the scoring
    model, its empty-history popularity set from the train labels."""
    cfg = config.check().train
    plan = distribute.plan(cfg)
    if cfg.jit_compile and cfg.loss == "sampled":
        raise ValueError("train.jit_compile: the sampled softmax has no XLA kernel; use "
                         "train.loss \"full\" or leave jit_compile null")
    keras.utils.set_random_seed(cfg.seed)
    train_ds, counts = training_batches(train_data, n_items, cfg, plan)
    eval_ds = None
    if eval_data is not None:
        eval_ds = eval_data.batch(plan.batch_size).map(
            lambda ids, labels: (ids, position_targets(ids, labels, n_items)))
    with plan.scope():
        model = build_model(config, n_items)
        set_popularity(model, counts)
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
    model = train(streamed_examples(inputs.train_files, tft_output),
                  streamed_examples(inputs.eval_files, tft_output), config,
                  vocabulary_size(tft_output), log_dir=inputs.log_dir)
    return Trained(model, export_spec(config, tft_output))
