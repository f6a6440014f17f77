"""Explanation samples of pushed models, on real exports of small models whose decisions are
known by construction: one TFT graph (a clickstreams-style item vocabulary and left padding,
reshapes for the others) analysed once over generated examples, and five small Keras models
exported through the suite's export on it.

- tone: PCM -> log-mel (the speech front end block) -> ``normalize`` -> softmax; the class is
  whether a 1 kHz tone lies under broadband noise, so only the mel bins around 1 kHz carry it;
- window: the harness's 1D CNN on windows whose class is which third carries a raised level
  (learnt in a few epochs: some eval answers are wrong);
- image: a small CNN with a ``features`` map; the class is whether a bright patch is there;
- ranker: a hand-built next-item scorer in which one "decider" item of a history points to
  its target item, the others adding small noise;
- score: the tone model served as an anomaly score, without class probabilities.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras
import tensorflow as tf

from components import explain_samples
from components.explain_samples import KINDS, explanation_samples
from tests import harness

N, N_TRAIN = 240, 160  # examples; the models train on the first N_TRAIN, explain the rest
RATE, SAMPLES = 4000, 256  # tone model: 64 ms of PCM at 4 kHz
TONE_HZ = 1000.0
LENGTH = 4  # ranker: history positions
DECIDERS, TARGETS = range(0, 10), range(10, 20)  # item i<d> points to item i<d + 10>
N_ITEMS = 40
TONE_CLASSES, WINDOW_CLASSES = ("noise", "tone"), ("first", "middle", "last")
IMAGE_CLASSES = ("plain", "patch")


def _item(i: int) -> str:
    return f"i{i:02d}"


def _data(window: np.ndarray, window_label: np.ndarray) -> dict:
    """Every raw feature of the N examples (each model reads its own; the windows are the
    harness's) and the ranker's deciders."""
    rng = np.random.default_rng(0)
    t = np.arange(SAMPLES) / RATE
    tone_label = np.arange(N) % 2
    tone = rng.normal(0.0, 0.5, (N, SAMPLES))
    tone += tone_label[:, None] * np.sin(2 * np.pi * TONE_HZ * t[None]
                                         + rng.uniform(0, 2 * np.pi, (N, 1)))
    image_label = np.arange(N) % 2
    image = rng.uniform(0.1, 0.3, (N, 12, 12, 1))
    for i in np.flatnonzero(image_label):
        r, c = rng.integers(0, 8, 2)
        image[i, r:r + 4, c:c + 4] = 0.9
    histories, next_items, deciders = [], [], []
    for i in range(N):
        fillers = [_item(int(v)) for v in rng.integers(20, N_ITEMS, LENGTH - 2)]
        if i % 4 == 3:  # no decider; a decider or a filler comes next (into the vocabulary)
            histories.append(fillers)
            next_items.append(_item((i // 8) % 10) if i % 8 == 3
                              else _item(int(rng.integers(20, N_ITEMS))))
            deciders.append(None)
            continue
        d = int(rng.choice(DECIDERS))
        history = list(fillers)
        history.insert(int(rng.integers(0, LENGTH - 1)), _item(d))
        histories.append(history)
        # Mostly the decider's target; sometimes an item the model cannot guess.
        next_items.append(_item(d + 10) if i % 4 else _item(int(rng.integers(20, N_ITEMS))))
        deciders.append(_item(d))
    return {"tone": tone.astype(np.float32), "tone_label": tone_label,
            "window": window.astype(np.float32), "window_label": window_label,
            "image": image.astype(np.float32), "image_label": image_label,
            "history": histories, "next_item": next_items, "deciders": deciders}


def _serialize(data: dict, i: int) -> bytes:
    def floats(values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=np.ravel(values)))

    def ints(value):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    def strings(values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()
                                                                     for v in values]))

    feature = {"tone": floats(data["tone"][i]), "tone_label": ints(data["tone_label"][i]),
               "window": floats(data["window"][i]),
               "window_label": ints(data["window_label"][i]),
               "image": floats(data["image"][i]), "image_label": ints(data["image_label"][i]),
               "history": strings(data["history"][i]),
               "next_item": strings([data["next_item"][i]])}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


RAW_SPEC = {
    "tone": tf.io.FixedLenFeature([SAMPLES], tf.float32),
    "tone_label": tf.io.FixedLenFeature([], tf.int64),
    "window": tf.io.FixedLenFeature([64], tf.float32),
    "window_label": tf.io.FixedLenFeature([], tf.int64),
    "image": tf.io.FixedLenFeature([144], tf.float32),
    "image_label": tf.io.FixedLenFeature([], tf.int64),
    "history": tf.io.VarLenFeature(tf.string),
    "next_item": tf.io.FixedLenFeature([], tf.string),
}


def preprocessing_fn(inputs: dict) -> dict:
    """Reshapes, and the clickstreams app's item vocabulary and left padding."""
    import tensorflow_transform as tft

    from apps.clickstreams.preprocessing import left_pad

    vocabulary = tft.vocabulary(inputs["next_item"], vocab_filename="items")
    history = tft.apply_vocabulary(inputs["history"], vocabulary, num_oov_buckets=1)
    shifted = tf.SparseTensor(history.indices, history.values + 1, history.dense_shape)
    return {
        "tone_xf": inputs["tone"], "tone_label": inputs["tone_label"],
        "window_xf": tf.reshape(inputs["window"], [-1, 64, 1]),
        "window_label": inputs["window_label"],
        "image_xf": tf.reshape(inputs["image"], [-1, 12, 12, 1]),
        "image_label": inputs["image_label"],
        "item_ids": left_pad(shifted, LENGTH),
        "label": tf.reshape(tft.apply_vocabulary(inputs["next_item"], vocabulary,
                                                 num_oov_buckets=1), [-1]),
    }


def _tone_model(data: dict) -> keras.Model:
    from blocks.signal.log_mel import LogMelSpectrogram

    keras.utils.set_random_seed(0)
    pcm = keras.Input((SAMPLES,), name="tone_xf")
    x = LogMelSpectrogram(RATE, 64, 32, 64, 16, 0.0, RATE / 2, name="log_mel")(pcm)
    x = keras.layers.BatchNormalization(axis=2, momentum=0.8, center=False, scale=False,
                                        name="normalize")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="probabilities",
                                 kernel_regularizer=keras.regularizers.L2(0.1))(x)
    model = keras.Model(pcm, outputs)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(data["tone"][:N_TRAIN], data["tone_label"][:N_TRAIN], epochs=15, batch_size=32,
              verbose=0)
    return model


def _image_model(data: dict) -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 1), name="image_xf")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="features")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy")
    model.fit(data["image"][:N_TRAIN], data["image_label"][:N_TRAIN], epochs=10, batch_size=32,
              verbose=0)
    return model


def _ranker(vocabulary: list[str]) -> keras.Model:
    """History ids -> scores over the vocabulary: the mean over positions of each item's
    row, a decider's row pointing to its target (5), every row adding noise (sd 0.3)."""
    n = len(vocabulary)
    index = {item: i for i, item in enumerate(vocabulary)}
    rows = np.random.default_rng(1).normal(0.0, 0.3, (n + 2, n)).astype(np.float32)
    rows[0] = 0.0  # padding
    for d in DECIDERS:
        rows[index[_item(d)] + 1, index[_item(d + 10)]] = 5.0
    ids = keras.Input((LENGTH,), dtype="int32", name="item_ids")
    embedding = keras.layers.Embedding(n + 2, n, name="item_rows")
    scores = keras.layers.GlobalAveragePooling1D(name="mean")(embedding(ids))
    model = keras.Model(ids, scores, name="ranker")
    embedding.set_weights([rows])
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Raw eval examples and the version folder of each model (and the data)."""
    from apps.clickstreams.trainer import top_k_outputs
    from components import transform_local
    from serving.export import ExportSpec, classification_outputs, export_serving_model

    root = tmp_path_factory.mktemp("explain")
    window_model, window, window_label = harness.trained_window_cnn(N, N_TRAIN, epochs=1)
    data = _data(window, window_label)
    examples = [_serialize(data, i) for i in range(N)]
    path = str(root / "examples.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for example in examples[:N_TRAIN]:
            writer.write(example)
    tft_output = transform_local.analyze([path], RAW_SPEC, preprocessing_fn,
                                         str(root / "transform"))
    vocabulary = [v.decode() for v in tft_output.vocabulary_by_name("items")]
    tone_model = _tone_model(data)

    def score(probabilities):  # an anomaly score, no class probabilities
        return {"score": probabilities[:, 1], "is_anomaly": probabilities[:, 1] > 0.5}

    models = {
        "tone": (tone_model, "tone", classification_outputs(TONE_CLASSES)),
        "window": (window_model, "window", classification_outputs(WINDOW_CLASSES)),
        "image": (_image_model(data), "image", classification_outputs(IMAGE_CLASSES)),
        "ranker": (_ranker(vocabulary), "history", top_k_outputs(vocabulary, 20)),
        "score": (tone_model, "tone", score),
    }
    inputs = {"history": "item_ids"}
    dirs = {}
    for name, (model, feature, postprocess) in models.items():
        spec = ExportSpec((feature,), (inputs.get(feature, f"{feature}_xf"),), postprocess)
        metadata = {"app": f"test_{name}"}
        if name == "window":  # the effective config, as the trainer keeps it
            metadata["config"] = {"data": {"classes": list(WINDOW_CLASSES)}}
        dirs[name] = export_serving_model(model, tft_output, str(root / "models" / name / "1"),
                                          spec, model_name=name, metadata=metadata)
    return {"dirs": dirs, "eval": examples[N_TRAIN:], "data": data, "root": root,
            "vocabulary": vocabulary}


def _served(version_dir: str, examples: list[bytes]) -> dict:
    loaded = tf.saved_model.load(version_dir)
    return {k: v.numpy() for k, v in
            loaded.signatures["serving_default"](examples=tf.constant(examples)).items()}


def _capture(monkeypatch, name: str) -> list:
    """Records the arguments of the module's drawing function ``name`` (which still runs)."""
    calls, draw = [], getattr(explain_samples, name)

    def recording(*args):
        calls.append(args)
        return draw(*args)

    monkeypatch.setattr(explain_samples, name, recording)
    return calls


def _check_pngs(samples, out_dir) -> None:
    for sample in samples:
        path = os.path.join(out_dir, sample.file)
        assert os.path.getsize(path) > 5000, sample
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) >= 200, image.size
    assert len({s.file for s in samples}) == len(samples)


def test_unknown_kind_and_missing_folder_raise(tmp_path):
    assert KINDS == ("grad_cam", "saliency", "item_influence")
    with pytest.raises(ValueError, match="'lime': expected one of grad_cam, saliency, "
                                         "item_influence"):
        explanation_samples(str(tmp_path), [], label_key="label", model_input_key="x",
                            kind="lime", out_dir=str(tmp_path))
    missing = str(tmp_path / "models" / "m" / "7")
    with pytest.raises(FileNotFoundError, match=f"{missing}: no such model version folder"):
        explanation_samples(missing, [b""], label_key="label", model_input_key="x",
                            kind="saliency", out_dir=str(tmp_path))


def test_saliency_of_the_log_mel_concentrates_on_the_tone_band(exported, tmp_path,
                                                               monkeypatch):
    """Saliency over the front end's log-mel (``head_from``): its mass lies in the mel bins
    the tone raises, the only ones that carry the class. Every answer is right here."""
    calls = _capture(monkeypatch, "_image_figure")
    out = tmp_path / "tone"
    samples, note = explanation_samples(
        exported["dirs"]["tone"], exported["eval"], label_key="tone_label",
        model_input_key="tone_xf", kind="saliency", head_from="normalize", out_dir=str(out))
    assert note == f"no wrong predictions among the {N - N_TRAIN} examples"
    assert [s.correct for s in samples] == [True] * 3
    assert all(s.caption.startswith("correct: ") and "(p=" in s.caption for s in samples)
    _check_pngs(samples, out)

    # The band: mel bins whose mean log-mel the tone raises, from the model's own front end.
    front_end, _ = _front_end(exported["dirs"]["tone"])
    data = exported["data"]
    mel = np.asarray(front_end([data["tone"]], training=False))[..., 0]  # [n, frames, bins]
    raised = mel[data["tone_label"] == 1].mean(axis=(0, 1)) - \
        mel[data["tone_label"] == 0].mean(axis=(0, 1))
    band = raised > 0.5  # the tone at least multiplies the bin's energy by 1.6
    assert 0 < band.sum() <= 4, raised
    assert len(calls) == 3
    for feature, saliency, source, _ in calls:
        assert feature.shape == saliency.shape == mel.shape[1:]  # time x frequency
        assert source == "input of layer 'normalize'"
        mass = saliency.sum(axis=0)
        share = mass[band].sum() / mass.sum()
        assert share > 0.5 and share > 2.5 * band.mean(), (share, band.mean())


def _front_end(version_dir: str):
    from serving.export import load_keras_model, split_front_end

    return split_front_end(load_keras_model(version_dir), "normalize")


def test_saliency_of_a_raw_window_captions_follow_the_served_answers(exported, tmp_path,
                                                                     monkeypatch):
    calls = _capture(monkeypatch, "_lines_figure")
    out = tmp_path / "window"
    eval_examples = exported["eval"]
    labels = exported["data"]["window_label"][N_TRAIN:]
    served = _served(exported["dirs"]["window"], eval_examples)
    right = served["class_ids"] == labels
    assert right.sum() >= 2 and (~right).sum() >= 2, right  # both groups exist

    samples, note = explanation_samples(
        exported["dirs"]["window"], eval_examples, label_key="window_label",
        model_input_key="window_xf", kind="saliency", out_dir=str(out), per_group=2)
    assert note == ""
    assert [s.correct for s in samples] == [True, True, False, False]
    _check_pngs(samples, out)
    def spread(candidates, n=2):  # one example per label first, then the rest in order
        first = [i for k, i in enumerate(candidates) if labels[i] not in labels[candidates[:k]]]
        return (first + [i for i in candidates if i not in first])[:n]

    expected = spread(np.flatnonzero(right)) + spread(np.flatnonzero(~right))
    for sample, i in zip(samples, expected, strict=True):
        name = WINDOW_CLASSES[served["class_ids"][i]]
        p = served["scores"][i]
        if sample.correct:
            assert sample.caption == f"correct: {name} (p={p:.2f})"
        else:
            assert sample.caption == (f"wrong: label {WINDOW_CLASSES[labels[i]]}, predicted "
                                      f"{name} (p={p:.2f})")
    for feature, saliency, source, _ in calls:  # the 1-D model input, one channel
        assert feature.shape == saliency.shape == (64, 1) and source == "model input"
        assert saliency.max() == pytest.approx(1.0)

    # Only the right answers: nothing wrong to show, and the note says so.
    only_right = [e for e, ok in zip(eval_examples, right, strict=True) if ok]
    samples, note = explanation_samples(
        exported["dirs"]["window"], only_right, label_key="window_label",
        model_input_key="window_xf", kind="saliency", out_dir=str(tmp_path / "right"),
        class_names=("A", "B", "C"))
    assert note == f"no wrong predictions among the {len(only_right)} examples"
    assert [s.correct for s in samples] == [True] * 3
    shown = [s.caption.split(" ")[1] for s in samples]
    assert len(set(shown)) == len(set(labels[right]).intersection(range(3))) == 3  # 3 classes


def test_grad_cam_overlays_of_an_image_classifier(exported, tmp_path, monkeypatch):
    out = tmp_path / "image"
    samples, _ = explanation_samples(
        exported["dirs"]["image"], exported["eval"], label_key="image_label",
        model_input_key="image_xf", kind="grad_cam", out_dir=str(out), per_group=2)
    assert sum(s.correct for s in samples) == 2
    _check_pngs(samples, out)
    for sample in samples:
        with Image.open(out / sample.file) as image:
            pixels = np.asarray(image.convert("RGB"), np.int32)
        assert sample.caption.split(":")[0] in ("correct", "wrong")
        assert any(f"{c} (p=" in sample.caption for c in IMAGE_CLASSES)
        if "patch (p=" in sample.caption:  # the patch's heat colours the overlay (jet)
            assert (np.abs(pixels[..., 0] - pixels[..., 2]) > 60).sum() > 100


def test_item_influence_is_largest_for_the_deciding_item(exported, tmp_path, monkeypatch):
    calls = _capture(monkeypatch, "_influence_figure")
    out = tmp_path / "ranker"
    eval_examples = exported["eval"]
    samples, note = explanation_samples(
        exported["dirs"]["ranker"], eval_examples, label_key="label",
        model_input_key="item_ids", kind="item_influence", out_dir=str(out))
    assert [s.correct for s in samples] == [True] * 3 + [False] * 3, note
    _check_pngs(samples, out)
    data = exported["data"]
    chosen = [int(s.file.rsplit("session", 1)[1][:-4]) for s in samples]
    for sample, i, (positions, items, drops, explained) in zip(samples, chosen, calls,
                                                               strict=True):
        history = data["history"][N_TRAIN + i]
        vocabulary = set(exported["vocabulary"])
        # Named by the vocabulary, oldest first.
        assert items == [h if h in vocabulary else "(unknown item)" for h in history]
        assert len(positions) == len(history)
        decider = data["deciders"][N_TRAIN + i]
        if decider is not None:
            assert explained == _item(int(decider[1:]) + 10), (history, explained)
            assert items[int(np.argmax(drops))] == decider
            assert drops.max() > 3 * np.delete(drops, np.argmax(drops)).max()
        next_item = data["next_item"][N_TRAIN + i]
        if sample.correct:
            assert sample.caption.startswith(f"correct: next item {next_item} at rank ")
        elif next_item in vocabulary:
            assert sample.caption.startswith(f"wrong: next item {next_item} not in the top 20")
        else:
            assert sample.caption.startswith("wrong: next item outside the model's vocabulary")
        assert f"; top-1 {explained} (p=" in sample.caption
    assert any(data["deciders"][N_TRAIN + i] is not None for i in chosen)

    # The raw next item as the label gives the same answers.
    raw = explanation_samples(exported["dirs"]["ranker"], eval_examples,
                              label_key="next_item", model_input_key="item_ids",
                              kind="item_influence", out_dir=str(tmp_path / "raw"))
    assert raw == (samples, note)


def test_models_it_cannot_explain_give_a_note(exported, tmp_path):
    dirs, eval_examples = exported["dirs"], exported["eval"][:8]
    samples, note = explanation_samples(
        dirs["score"], eval_examples, label_key="tone_label", model_input_key="tone_xf",
        kind="saliency", out_dir=str(tmp_path))
    assert samples == [] and "not class probabilities" in note and "score" in note
    samples, note = explanation_samples(
        dirs["ranker"], eval_examples, label_key="label", model_input_key="item_ids",
        kind="saliency", out_dir=str(tmp_path))
    assert samples == [] and "ranker" in note and "item_influence" in note
    samples, note = explanation_samples(
        dirs["window"], eval_examples, label_key="window_label", model_input_key="window_xf",
        kind="item_influence", out_dir=str(tmp_path))
    assert samples == [] and "ranker" in note
    samples, note = explanation_samples(
        dirs["window"], eval_examples, label_key="window_label", model_input_key="window_xf",
        kind="grad_cam", out_dir=str(tmp_path))
    assert samples == [] and "grad_cam needs images" in note
    assert os.listdir(tmp_path) == []
