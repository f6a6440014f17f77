"""Transcribe mode (spoken digit strings): CTC decoding in the serving graph and in numpy on
hand-made probabilities, the CTC loss, a CRNN trained a few steps on synthesised strings,
the export with the decoded string in the served outputs, and the TFMA string metrics."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import suite  # noqa: F401
import tensorflow as tf

from apps.speech import ctc, data, metrics, pipeline, strings, trainer
from apps.speech.app import APP
from apps.speech.config import SpeechConfig
from apps.speech.features import AUDIO_XF, TRANSCRIPT, TRANSCRIPT_IDS
from suite import examples_io
from tests import harness

TINY = dataclasses.replace(SpeechConfig.preset("tiny"), mode="transcribe")
CONFIG = dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, epochs=2))
B = ctc.BLANK


def _probabilities(paths: list[list[int]], confidence: float = 0.9) -> np.ndarray:
    """[batch, frames, 11]: each frame's symbol at ``confidence``, the rest shared."""
    frames = max(len(p) for p in paths)
    out = np.full((len(paths), frames, 11), (1 - confidence) / 10, np.float32)
    for i, path in enumerate(paths):
        for t, symbol in enumerate(path + [B] * (frames - len(path))):
            out[i, t, symbol] = confidence
    return out


def test_ctc_decoders_on_hand_made_probabilities():
    paths = [[1, 1, B, 1, 2, 2, B, B], [B, B, B, B, B, B, B, B], [7, B, 0, 0, 3, 3, 3, 9]]
    p = _probabilities(paths)
    assert ctc.greedy_decode(p) == ["112", "", "7039"]
    for decoder in ("greedy", "beam"):
        digits, score = ctc.decode(tf.constant(p), decoder, beam_width=4)
        assert [d.decode() for d in digits.numpy()] == ["112", "", "7039"], decoder
        assert np.all((score.numpy() > 0) & (score.numpy() <= 1.0))
    _, greedy_score = ctc.decode(tf.constant(p), "greedy")
    np.testing.assert_allclose(greedy_score.numpy(), 0.9 ** 8, rtol=1e-4)
    # Beam search sums a labelling over its alignments: two weak frames that greedy reads
    # as blank, beam search reads as the digit they share.
    split = np.full((1, 2, 11), 0.0, np.float32)
    split[0, :, B], split[0, :, 5], split[0, :, 6] = 0.4, 0.35, 0.25
    assert ctc.greedy_decode(split) == [""]
    digits, _ = ctc.decode(tf.constant(split), "beam", beam_width=8)
    assert digits.numpy()[0].decode() == "5"
    outputs = ctc.transcript_outputs()(tf.constant(p))
    assert set(outputs) == {"digits", "score", "n_digits", "probabilities"}
    assert outputs["n_digits"].numpy().tolist() == [3, 0, 4]


def test_ctc_loss_prefers_the_right_transcript():
    logits = tf.math.log(tf.constant(_probabilities([[1, B, 2, B, B, B]])))
    right = ctc.ctc_loss(tf.constant([[1, 2, -1]]), logits).numpy()
    wrong = ctc.ctc_loss(tf.constant([[2, 1, -1]]), logits).numpy()
    assert np.isfinite(right) and right < wrong


def test_string_metrics_accumulate_like_the_numpy_definition():
    pairs = [("123", "123"), ("4567", "457"), ("89", "98"), ("000", "0000")]
    accumulator = metrics._Accumulator()
    for reference, hypothesis in pairs:
        accumulator.add(reference, hypothesis)
    other = metrics._Accumulator()
    other.add("5", "6")
    accumulator.merge(other)
    expected = strings.string_metrics([r for r, _ in pairs] + ["5"], [h for _, h in pairs] + ["6"])
    assert accumulator.result("cer") == pytest.approx(expected["cer"]) == 5 / 13
    assert accumulator.result("string_accuracy") == pytest.approx(0.2)
    assert metrics._text(np.array([b"123"], dtype=object)) == "123"
    config = pipeline.transcribe_eval_config(CONFIG)
    assert config.model_specs[0].prediction_key == "digits"
    assert config.model_specs[0].label_key == TRANSCRIPT
    assert {m.class_name for m in config.metrics_specs[0].metrics} == {
        "ExampleCount", "CharacterErrorRate", "StringAccuracy"}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("transcribe")
    raw = data.generate_synthetic(str(root / "raw"), "fsdd", speakers=3, per_speaker=4)
    return harness.prepare(APP, CONFIG, raw, root)


def test_strings_for_training_are_drawn_afresh_from_training_clips(prepared):
    pool = trainer.digit_pool(prepared.files("train"), CONFIG)
    assert len(pool) == 60 and set(pool.speaker_names) == {"george", "jackson", "lucas"}
    batches = iter(trainer.string_dataset(pool, CONFIG))
    per_pass = CONFIG.transcribe.train_strings // CONFIG.train.batch_size
    first = [next(batches) for _ in range(per_pass)]
    second = next(batches)
    x, y = first[0]
    assert x.shape == (CONFIG.train.batch_size, CONFIG.clip_samples)
    assert y.shape == (CONFIG.train.batch_size, CONFIG.transcribe.max_digits)
    lengths = (y.numpy() >= 0).sum(axis=1)
    assert lengths.min() >= 1 and lengths.max() <= CONFIG.transcribe.max_digits
    assert not np.array_equal(second[0].numpy(), x.numpy())  # a new pass, new strings


def test_a_crnn_trained_a_few_steps_with_ctc_learns_and_exports_the_string(prepared, tmp_path,
                                                                          capsys):
    model_dir, trained = harness.check_export(APP, CONFIG, prepared, tmp_path / "model")
    history = trained.metadata["history"]
    assert trained.metadata["kind"] == "crnn" and len(history) == CONFIG.train.epochs
    assert history[-1]["loss"] < history[0]["loss"]
    loaded = tf.saved_model.load(model_dir)
    examples = examples_io.first_examples(prepared.files("eval"), 4)
    served = {k: v.numpy() for k, v in
              loaded.signatures["serving_default"](examples=tf.constant(examples)).items()}
    assert set(served) == {"digits", "score", "n_digits", "probabilities"}
    assert served["probabilities"].shape[0] == 4 and served["probabilities"].shape[2] == 11
    assert [d.decode() for d in served["digits"]] == ctc.greedy_decode(served["probabilities"])
    transformed = loaded.signatures["transform_features"](examples=tf.constant(examples))
    assert transformed[AUDIO_XF].shape == (4, CONFIG.clip_samples)
    labels = ctc.ids_to_strings(transformed[TRANSCRIPT_IDS].numpy())
    parsed = [tf.train.Example.FromString(e).features.feature[TRANSCRIPT].bytes_list.value[0]
              for e in examples]
    assert labels == [p.decode() for p in parsed]
    assert trained.metadata["mode"] == "transcribe" and trained.metadata["blank_index"] == B
    assert APP.spec(CONFIG).name == "speech-transcribe" and CONFIG.model_name == \
        "speech_transcribe"
    # `speech transcribe` on the same recordings as WAV files prints the served strings.
    from apps.speech import cli
    from apps.speech.features import AUDIO

    wavs = []
    for i, example in enumerate(examples):
        path = tmp_path / f"recording{i}.wav"
        path.write_bytes(tf.train.Example.FromString(example).features.feature[AUDIO]
                         .bytes_list.value[0])
        wavs.append(str(path))
    capsys.readouterr()
    assert cli.main(["transcribe", "--model", model_dir, *wavs]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"model: {model_dir}"
    assert [line.split(": ")[1].split("  (score")[0] for line in lines[1:]] == [
        d.decode() or "(no digits)" for d in served["digits"]]
