"""The speech app's feature path and models: preprocessing_fn through tft_beam (decode,
resample, fit length), the log-mel front end against a numpy reference on a known tone,
SpecAugment only in training, each model family building and learning, the export with
every signature, and the TFLite conversion of every family (tiny preset, generated clips;
the pipeline test checks the TFLite variants of the pushed model against it on PCM)."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

import suite  # noqa: F401
import tensorflow as tf

from apps.speech import data, model as speech_model, preprocessing, wav
from apps.speech.app import APP
from apps.speech.config import MODEL_KINDS, SpeechConfig
from apps.speech.features import AUDIO, AUDIO_XF, LABEL
from components import transform_local
from serving import export, tflite
from suite import examples_io
from suite.config import to_dict
from tests import harness

TINY = SpeechConfig.preset("tiny")
RATE, LENGTH = TINY.data.sample_rate_hz, TINY.clip_samples
# Fewer epochs: these tests check the plumbing, not the accuracy (the pipeline test does).
CONFIG = dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, epochs=4))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Generated FSDD clips -> ingested examples -> TFT analysis, shared by the tests."""
    root = tmp_path_factory.mktemp("speech")
    raw = data.generate_synthetic(str(root / "raw"), "fsdd", speakers=3, per_speaker=4)
    return harness.prepare(APP, CONFIG, raw, root)


@pytest.fixture(scope="module")
def config(prepared) -> SpeechConfig:
    return APP.with_ingested(CONFIG, prepared.ingested)


def _tone(hz: float, n: int, rate: int, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * hz * np.arange(n) / rate)).astype(np.float32)


def test_preprocessing_fn_decodes_resamples_and_fits_the_length():
    short = _tone(440, LENGTH // 2, RATE)
    loud = np.concatenate([np.zeros(LENGTH), _tone(300, LENGTH, RATE), np.zeros(LENGTH // 3)])
    fast = _tone(440, 22050 // 4, 22050)
    stereo = np.stack([_tone(440, 4000, 16000), 0.5 * _tone(440, 4000, 16000)], axis=1)
    clips = [wav.wav16_bytes(short, RATE), wav.wav16_bytes(loud, RATE),
             wav.wav16_bytes(fast, 22050), wav.encode_wav(stereo, 16000)]
    rows = [{AUDIO: np.array(c, dtype=object), LABEL: np.int64(i)} for i, c in enumerate(clips)]
    spec = {k: v for k, v in preprocessing.raw_feature_spec(TINY).items() if k in (AUDIO, LABEL)}
    custom = {"config": to_dict(TINY)}
    out = transform_local.transform_rows(
        rows, spec, lambda x: preprocessing.preprocessing_fn(x, custom))
    pcm = [r[AUDIO_XF] for r in out]
    assert all(p.shape == (LENGTH,) and p.dtype == np.float32 for p in pcm)
    assert [int(r[LABEL]) for r in out] == [0, 1, 2, 3]
    # A short clip is centred between zeros.
    start = (LENGTH - len(short)) // 2
    np.testing.assert_allclose(pcm[0][start:start + len(short)], short, atol=1 / 32768)
    assert not pcm[0][:start].any() and not pcm[0][start + len(short):].any()
    # A long clip keeps its loudest stretch.
    np.testing.assert_allclose(pcm[1], _tone(300, LENGTH, RATE), atol=1 / 32768)
    # Other rates are resampled in the graph exactly as ingestion resamples them.
    resampled = wav.resample(wav.read_wav(clips[2], "x")[0][:, 0], 22050, RATE)
    start = (LENGTH - len(resampled)) // 2
    np.testing.assert_allclose(pcm[2][start:start + len(resampled)], resampled, atol=1e-6)
    mono = wav.resample(0.75 * _tone(440, 4000, 16000), 16000, RATE)
    start = (LENGTH - len(mono)) // 2
    np.testing.assert_allclose(pcm[3][start:start + len(mono)], mono, atol=2e-4)


def test_in_graph_resampler_matches_ingestion_and_an_ideal_tone():
    for in_rate in (11025, 16000, 22050, 44100, 48000):
        x = _tone(440, in_rate // 2, in_rate) + _tone(1800, in_rate // 2, in_rate, 0.2)
        got = preprocessing.resample(tf.constant(x), tf.constant(in_rate), RATE).numpy()
        np.testing.assert_allclose(got, wav.resample(x, in_rate, RATE), atol=1e-6)
        ideal = _tone(440, len(got), RATE) + _tone(1800, len(got), RATE, 0.2)
        np.testing.assert_allclose(got[100:-100], ideal[100:-100], atol=3e-3)


def _mel_matrix(num_bins: int, fft: int, rate: int, lower: float, upper: float) -> np.ndarray:
    """Triangular filters equally spaced on the HTK mel scale (numpy reference)."""
    def mel(f):
        return 1127.0 * np.log1p(np.asarray(f, np.float64) / 700.0)

    freqs = mel(np.arange(fft // 2 + 1) * rate / fft)
    edges = np.linspace(mel(lower), mel(upper), num_bins + 2)
    lo, centre, hi = edges[:-2], edges[1:-1], edges[2:]
    up = (freqs[:, None] - lo) / (centre - lo)
    down = (hi - freqs[:, None]) / (hi - centre)
    weights = np.maximum(0.0, np.minimum(up, down))
    weights[0] = 0.0  # no DC
    return weights


def test_log_mel_front_end_matches_a_numpy_reference_on_a_tone(prepared, config):
    layer = speech_model.build_model(config).get_layer(speech_model.LOG_MEL)
    f = config.features
    frame, hop = round(RATE * f.frame_ms / 1000), round(RATE * f.hop_ms / 1000)
    fft = 1 << (frame - 1).bit_length()
    assert (layer.frame_length, layer.frame_step, layer.fft_length) == (frame, hop, fft)
    # The tone goes through the transform graph, as served audio does.
    tone = _tone(1000.0, LENGTH, RATE)
    layer_tft = prepared.inputs.transform_output.transform_features_layer()
    pcm = layer_tft({AUDIO: tf.constant([wav.wav16_bytes(tone, RATE)])})[AUDIO_XF]
    np.testing.assert_allclose(pcm.numpy()[0], tone, atol=1 / 32768)
    features = layer(pcm).numpy()[0, :, :, 0]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame) / frame)
    frames = np.stack([pcm.numpy()[0, s:s + frame] for s in range(0, LENGTH - frame + 1, hop)])
    power = np.abs(np.fft.rfft(frames * window, n=fft)) ** 2
    upper = 0.95 * RATE / 2
    mel = _mel_matrix(f.num_mel_bins, fft, RATE, f.lower_hz, upper)
    expected = np.log(power @ mel + f.log_floor)
    assert features.shape == expected.shape
    np.testing.assert_allclose(features, expected, atol=2e-3, rtol=1e-3)
    centres = 700 * np.expm1(np.linspace(1127 * np.log1p(f.lower_hz / 700),
                                         1127 * np.log1p(upper / 700),
                                         f.num_mel_bins + 2)[1:-1] / 1127)
    assert features.mean(axis=0).argmax() == np.abs(centres - 1000.0).argmin()


def _layers(model) -> list:
    found = []
    for layer in model.layers:
        found.append(layer)
        if hasattr(layer, "layers"):
            found += _layers(layer)
    return found


def test_spec_augment_is_active_in_training_only(config):
    import keras

    model = speech_model.build_model(config)
    wrapper = speech_model.with_augmentation(model, config)
    assert "SpecAugment" not in {type(layer).__name__ for layer in _layers(model)}
    assert "SpecAugment" in {type(layer).__name__ for layer in _layers(wrapper)}
    x = np.random.default_rng(0).normal(0, 0.1, (4, LENGTH)).astype(np.float32)
    inference = model(x, training=False).numpy()
    np.testing.assert_allclose(wrapper(x, training=False).numpy(), inference, atol=1e-6)
    keras.utils.set_random_seed(1)
    spec_in = model.get_layer(speech_model.NORMALIZE)(model.get_layer(speech_model.LOG_MEL)(x))
    masked = wrapper.get_layer("spec_augment")(spec_in, training=True).numpy()
    assert (masked == 0).any() and not np.allclose(masked, spec_in.numpy())


@pytest.mark.parametrize("kind", [k for k in MODEL_KINDS if k != "dscnn"])
def test_each_model_family_builds_and_learns(kind, prepared, config):
    """kwt and crnn (dscnn, the default, trains through the app's ``fit`` in ``exported``)."""
    config = APP.with_model(config, kind)
    model = speech_model.build_model(config)
    assert model.input_shape == (None, LENGTH)
    assert model.output_shape == (None, len(config.data.classes))
    import keras

    x, y = next(iter(prepared.inputs.dataset(prepared.files("train"), 32, AUDIO_XF, LABEL)))
    loss = keras.losses.SparseCategoricalCrossentropy()
    model.compile(optimizer=keras.optimizers.Adam(2e-2), loss=loss)
    # Batch statistics (training=True): after 10 steps the moving averages of the
    # normalisation layers still lag behind.
    before = float(loss(y, model(x, training=True)))
    model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    after = float(loss(y, model(x, training=True)))
    assert np.isfinite(after) and after < 0.8 * before
    sequence = speech_model.build_model(dataclasses.replace(config, mode="transcribe"))
    assert sequence.output_shape[-1] == speech_model.N_SYMBOLS and len(sequence.output_shape) == 3


def test_utterance_normalisation_removes_the_level_of_a_clip(config):
    config = dataclasses.replace(config, features=dataclasses.replace(
        config.features, normalize="utterance", log_floor=1e-9))
    model = speech_model.build_model(config)
    envelope = 0.3 + 0.7 * np.sin(np.pi * 3 * np.arange(LENGTH) / LENGTH) ** 2
    loud = (envelope * _tone(700, LENGTH, RATE)).astype(np.float32)
    log_mel = model.get_layer(speech_model.LOG_MEL)(np.stack([loud, 0.1 * loud]))
    front = model.get_layer(speech_model.NORMALIZE)(log_mel).numpy()[..., 0]
    # 20 dB quieter: the same features once each clip is standardised over time (in the
    # bands the tone fills; the others hold numerical noise only).
    level = log_mel.numpy()[0, :, :, 0].mean(axis=0)
    bands = level > level.max() - np.log(1e3)
    assert bands.sum() >= 2
    np.testing.assert_allclose(front[0][:, bands], front[1][:, bands], atol=1e-2)


@pytest.fixture(scope="module")
def exported(prepared, config):
    model_dir, trained = harness.check_export(APP, config, prepared,
                                              prepared.root / "serving_model")
    return model_dir, trained


def test_export_serves_wav_bytes_of_any_encoding_and_rate(exported, prepared, config):
    model_dir, trained = exported
    history = trained.metadata["history"]
    assert trained.metadata["kind"] == "dscnn" and history[-1]["loss"] < history[0]["loss"]
    loaded = tf.saved_model.load(model_dir)
    examples = examples_io.first_examples(prepared.files("eval"), 8)
    served = {k: v.numpy() for k, v in
              loaded.signatures["serving_default"](examples=tf.constant(examples)).items()}
    assert set(served) == {"probabilities", "class_ids", "classes", "scores"}
    np.testing.assert_allclose(served["probabilities"].sum(axis=1), 1.0, atol=1e-5)
    assert [c.decode() for c in served["classes"]] == [
        config.data.classes[i] for i in served["class_ids"]]
    metadata = export.load_metadata(model_dir)
    assert metadata["mode"] == "keywords" and metadata["clip_samples"] == LENGTH
    # A 44.1 kHz stereo 24-bit recording, converted by the client as the reader converts,
    # is resampled in the graph: the same answer as the 8 kHz clip it was made from.
    example = tf.train.Example.FromString(examples[0])
    audio = example.features.feature[AUDIO].bytes_list.value[0]
    clip = wav.read_wav(audio, "x")[0][:, 0]
    hifi = wav.resample(clip, RATE, 44100)
    from apps.speech.client import wav_bytes

    converted = wav_bytes(wav.encode_wav(np.stack([hifi, hifi], 1), 44100, "pcm24"))
    raw = loaded.signatures["serving_raw"](audio=tf.constant([audio, converted]))
    probabilities = raw["probabilities"].numpy()
    np.testing.assert_allclose(probabilities[0], served["probabilities"][0], atol=1e-5)
    np.testing.assert_allclose(probabilities[1], probabilities[0], atol=0.05)
    with pytest.raises(tf.errors.InvalidArgumentError, match="sample rate"):
        loaded.signatures["serving_raw"](audio=tf.constant(
            [wav.wav16_bytes(_tone(440, 4000, 4000), 4000)]))


def test_every_model_family_converts_to_tflite(config, tmp_path):
    """Float32 conversion (the exported path: ExportArchive + from_saved_model) of the
    families the pipeline test does not convert, in one converter process."""
    import subprocess
    import sys

    models = {kind: speech_model.build_model(APP.with_model(config, kind))
              for kind in ("kwt", "crnn")}
    models["crnn_transcribe"] = speech_model.build_model(
        dataclasses.replace(config, mode="transcribe"))
    for name, model in models.items():
        export.export_core_model(model, str(tmp_path / name))
    script = ("import sys\nimport tensorflow as tf\n"
              "for path in sys.argv[1:]:\n"
              "    c = tf.lite.TFLiteConverter.from_saved_model(path, signature_keys=['serve'])\n"
              "    open(path + '.tflite', 'wb').write(c.convert())\n")
    result = subprocess.run([sys.executable, "-c", script,
                             *(str(tmp_path / name) for name in models)],
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "CUDA_VISIBLE_DEVICES": "-1"})
    assert result.returncode == 0, result.stderr[-3000:]
    rng = np.random.default_rng(0)
    for name, model in models.items():
        x = rng.normal(0, 0.1, (2, model.input_shape[1])).astype(np.float32)
        got = tflite.run_tflite(str(tmp_path / f"{name}.tflite"), x, batch_size=2)
        np.testing.assert_allclose(got, model(x, training=False).numpy(), atol=1e-4,
                                   err_msg=name)
