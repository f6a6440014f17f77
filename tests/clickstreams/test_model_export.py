"""Vocabulary and padding through tft_beam, both model kinds (and the sampled softmax) for a
few steps, the serving export with item id strings in and out, the TFMA ranking metrics, and
the recommend command (tiny preset, generated logs)."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

import suite  # noqa: F401
import keras
import tensorflow as tf

from apps.clickstreams import cli, data, metrics, trainer
from apps.clickstreams.app import APP
from apps.clickstreams.config import ClickstreamConfig
from apps.clickstreams.model import TRANSITION, build_model, item_embeddings
from serving import export, warmup
from suite.examples_io import first_examples
from tests import harness

TINY = ClickstreamConfig.preset("tiny")
CONFIG = dataclasses.replace(
    TINY, data=dataclasses.replace(TINY.data, max_history=4, min_item_count=2),
    train=dataclasses.replace(TINY.train, epochs=2))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Generated log -> ingested examples -> TFT analysis, shared by the tests."""
    root = tmp_path_factory.mktemp("clickstreams")
    log = data.generate_synthetic(str(root / "events.tsv"), n_sessions=300, n_items=30,
                                  n_clusters=3)
    prepared = harness.prepare(APP, CONFIG, log, root)
    return (root, prepared.ingested, prepared.files("train"), prepared.files("eval"),
            prepared.inputs.transform_output, prepared)


def _next_item_counts(files) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in tf.data.TFRecordDataset(files).as_numpy_iterator():
        item = tf.train.Example.FromString(record).features.feature["next_item"]
        key = item.bytes_list.value[0].decode()
        counts[key] = counts.get(key, 0) + 1
    return counts


def _example(history, next_item=None) -> bytes:
    feature = {"history": tf.train.Feature(bytes_list=tf.train.BytesList(
        value=[h.encode() for h in history]))}
    if next_item is not None:
        feature["next_item"] = tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[next_item.encode()]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_vocabulary_is_by_frequency_with_threshold_and_histories_are_left_padded(prepared):
    _, ingested, train_files, _, tft_output, _ = prepared
    counts = _next_item_counts(train_files)
    vocabulary = [v.decode() for v in tft_output.vocabulary_by_name("items")]
    assert set(vocabulary) == {i for i, n in counts.items() if n >= 2}
    assert len(vocabulary) == ingested.summary["catalog_size"]
    assert [counts[v] for v in vocabulary] == sorted((counts[v] for v in vocabulary),
                                                     reverse=True)
    n = len(vocabulary)
    a, b, c = vocabulary[:3]
    rare = next((i for i, k in counts.items() if k < 2), "never-seen")
    examples = [_example([a], b), _example([a, b, c, a, b, c], a),
                _example(["unknown", c], rare), _example([], a)]
    raw = tf.io.parse_example(examples, {"history": tf.io.VarLenFeature(tf.string),
                                         "next_item": tf.io.FixedLenFeature([], tf.string)})
    out = tft_output.transform_features_layer()(raw)
    np.testing.assert_array_equal(out["item_ids"].numpy(), [
        [0, 0, 0, 1], [3, 1, 2, 3], [0, 0, n + 1, 3], [0, 0, 0, 0]])
    np.testing.assert_array_equal(out["label"].numpy(), [1, 0, n, 0])


@pytest.mark.parametrize("kind, loss, transition", [
    ("sasrec", "full", True), ("gru", "full", True), ("sasrec", "sampled", True),
    ("sasrec", "full", False)])
def test_model_kinds_and_losses_learn_in_a_few_steps(kind, loss, transition, prepared):
    _, _, train_files, _, tft_output, _ = prepared
    n_items = trainer.vocabulary_size(tft_output)
    config = APP.with_model(CONFIG, kind)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, loss=loss),
                                 model=dataclasses.replace(config.model, transition=transition))
    untrained = build_model(config, n_items)
    assert untrained.input_shape == (None, 4) and untrained.output_shape == (None, n_items)
    chunks = list(trainer.transformed_chunks(train_files, tft_output))
    ids, labels = (np.concatenate([c[i] for c in chunks]) for i in (0, 1))
    assert ids.dtype == np.int32 and ids.shape == (len(labels), 4) and labels.max() < n_items
    x, y = ids[:64], labels[:64]
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    before = float(ce(y, untrained(x)))
    model = trainer.train(tf.data.Dataset.from_tensor_slices((ids[:192], labels[:192])), None,
                          config, n_items, verbose=0)
    after = float(ce(y, model(x)))
    assert np.isfinite(after) and after < before, (before, after)


def test_the_transition_path_adds_the_last_items_own_vector_to_every_score(prepared):
    n_items = trainer.vocabulary_size(prepared[4])
    assert CONFIG.model.transition  # the default
    model = build_model(CONFIG, n_items)
    items = keras.ops.convert_to_numpy(item_embeddings(model))[1:n_items + 1]
    history = np.array([[0, 0, 2, 4]], np.int32)  # the last item: vocabulary index 3
    table = np.zeros((n_items + 2, CONFIG.model.embedding_dim), np.float32)
    model.get_layer(TRANSITION).set_weights([table])
    without = keras.ops.convert_to_numpy(model(history))[0]
    table[4] = 50.0 * items[7] / np.linalg.norm(items[7])  # item 3 points at item 7
    model.get_layer(TRANSITION).set_weights([table])
    with_path = keras.ops.convert_to_numpy(model(history))[0]
    np.testing.assert_allclose(with_path - without, items @ table[4], rtol=1e-4, atol=1e-4)
    assert int(np.argmax(with_path)) == 7
    # Only the history's last item's vector reaches the scores: another last item, none.
    other = np.array([[0, 0, 4, 2]], np.int32)
    before = keras.ops.convert_to_numpy(model(other))[0]
    model.get_layer(TRANSITION).set_weights([np.zeros_like(table)])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(other))[0], before,
                               rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def exported(prepared):
    root, _, train_files, eval_files, tft_output, ready = prepared
    out, _ = harness.check_export(APP, CONFIG, ready, root / "serving_model")
    return out, train_files, eval_files, tft_output


def test_served_model_returns_item_id_strings(exported):
    model_dir, train_files, eval_files, tft_output = exported
    vocabulary = [v.decode() for v in tft_output.vocabulary_by_name("items")]
    k = min(CONFIG.serving.top_k, len(vocabulary))
    loaded = tf.saved_model.load(model_dir)
    assert {"serving_default", "transform_features", "serving_raw"} <= set(loaded.signatures)
    serve = loaded.signatures["serving_default"]

    examples = first_examples(eval_files, 16)
    out = serve(examples=tf.constant(examples))
    assert set(out) == {"items", "scores"}
    items, scores = out["items"].numpy(), out["scores"].numpy()
    assert items.shape == scores.shape == (16, k) and items.dtype == object
    assert {i.decode() for i in items.ravel()} <= set(vocabulary)
    assert np.all(np.diff(scores, axis=1) <= 1e-7) and np.all(scores > 0)

    # An empty history gets the most popular train next items, unknown items still count.
    counts = _next_item_counts(train_files)
    popular = sorted(vocabulary, key=lambda v: -counts[v])[:k]
    requests = data.history_examples([[], ["no-such-item"], ["no-such-item", vocabulary[0]]])
    special = serve(examples=tf.constant(requests))["items"].numpy()
    assert [i.decode() for i in special[0]] == popular
    assert [counts[i.decode()] for i in special[0]] == sorted(counts[p] for p in popular)[::-1]
    assert len(special[1]) == len(special[2]) == k

    # Raw tensors (padded with empty strings) give the same answer as tf.Examples.
    padded = tf.constant([["", "", vocabulary[1], vocabulary[0]], ["", "", "", ""]])
    raw = loaded.signatures["serving_raw"](history=padded)["items"].numpy()
    pair = serve(examples=tf.constant(data.history_examples([vocabulary[1:2] + vocabulary[:1],
                                                             []])))["items"].numpy()
    np.testing.assert_array_equal(raw, pair)

    transformed = loaded.signatures["transform_features"](examples=tf.constant(examples))
    assert transformed["item_ids"].shape == (16, CONFIG.data.max_history)
    assert export.load_metadata(model_dir)["app"] == "clickstreams"
    assert os.path.exists(os.path.join(model_dir, warmup.WARMUP_FILE))


def test_recommend_command_prints_ranked_item_ids(exported, capsys):
    model_dir, _, _, tft_output = exported
    first = tft_output.vocabulary_by_name("items")[0].decode()
    assert cli.main(["recommend", "--model", model_dir, "--history", first, "-k", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[1] == f"history: {first}"
    assert [line.split()[0] for line in lines[2:]] == ["1.", "2.", "3."]
    assert cli.main(["recommend", "--model", model_dir, "-k", "500"]) == 2
    assert "returns at most" in capsys.readouterr().err


def test_tfma_ranking_metrics_score_the_served_top_k():
    from tensorflow_model_analysis.metrics import metric_types

    inputs = [metric_types.StandardMetricInputs(
        label=np.array([target]), prediction=np.array(ranked, dtype=object))
        for ranked, target in [([b"b", b"c", b"d"], b"c"), ([b"c", b"b"], b"c"),
                               ([b"b", b"c"], b"a")]]
    expected = {"RecallAt20": 2 / 3, "MRRAt20": (1 / 2 + 1) / 3,
                "NDCGAt10": (1 / np.log2(3) + 1) / 3, "CoverageAt20": 3 / 6}
    for name, value in expected.items():
        kwargs = {"catalog_size": 6} if name == "CoverageAt20" else {}
        metric = getattr(metrics, name)(**kwargs)
        (computation,) = metric.computations()
        combiner = computation.combiner
        accumulators = [combiner.create_accumulator() for _ in range(2)]
        for i, element in enumerate(inputs):
            combiner.add_input(accumulators[i % 2], element)
        result = combiner.extract_output(combiner.merge_accumulators(accumulators))
        assert list(result.values()) == [pytest.approx(value)], name
        assert next(iter(result)).name == metric.name


def test_tflite_ranker_agrees_with_the_keras_scores(exported, prepared, tmp_path):
    model_dir = exported[0]
    report = harness.check_tflite(APP, CONFIG, prepared[-1], model_dir, tmp_path / "edge")
    assert report["k"] == 20 and (tmp_path / "edge" / "items.txt").is_file()
