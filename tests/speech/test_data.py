"""Ingestion of the speech app: each layout (FSDD, Speech Commands, class folders) on
generated WAV files, every WAV encoding the reader takes, the splits (recording indices,
held-out speaker, list files, speaker hash) without leakage, digit strings built from each
split's own clips, fingerprinted folders, and each kind of bad input: stopped with the file
named and nothing written, or skipped and counted with --skip-bad-files."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import struct

import numpy as np
import pytest

from apps.speech import data, strings, wav
from apps.speech.app import APP
from apps.speech.config import SpeechConfig
from apps.speech.features import (
    AUDIO, LABEL, LABEL_NAME, N_DIGITS, SOURCE_FILE, SPEAKER, SPLITS, TRANSCRIPT)
from suite import examples_io
from tests import harness

TINY = SpeechConfig.preset("tiny")
DIGITS3 = ("0", "1", "2")
RATE = TINY.data.sample_rate_hz


def _config(**data_fields) -> SpeechConfig:
    return dataclasses.replace(TINY, data=dataclasses.replace(TINY.data, **data_fields))


def _read(folder: str, split: str) -> list[dict]:
    """The examples of a split: audio decoded, features as Python values."""
    import tensorflow as tf  # noqa: PLC0415

    out = []
    for raw in examples_io.raw_dataset(harness.split_files(folder, split)):
        feature = tf.train.Example.FromString(raw.numpy()).features.feature
        row = {}
        for name, value in feature.items():
            if value.int64_list.value:
                row[name] = int(value.int64_list.value[0])
            elif name == AUDIO:
                samples, info = wav.read_wav(value.bytes_list.value[0], "example")
                assert info.encoding == "16-bit PCM" and info.channels == 1
                row[name], row["rate"] = samples[:, 0], info.sample_rate
            else:
                row[name] = value.bytes_list.value[0].decode()
        out.append(row)
    return out


@pytest.fixture(scope="module")
def fsdd(tmp_path_factory) -> str:
    return data.generate_synthetic(str(tmp_path_factory.mktemp("fsdd") / "recordings"), "fsdd",
                                   classes=DIGITS3, speakers=3, per_speaker=4)


@pytest.fixture(scope="module")
def commands(tmp_path_factory) -> str:
    return data.generate_synthetic(str(tmp_path_factory.mktemp("sc") / "speech_commands"),
                                   "speech-commands", classes=("yes", "no", "up"), speakers=4,
                                   per_speaker=2)


# ------------------------------------------------------------------ layouts and splits


def test_fsdd_by_recording_index_round_trips(fsdd, tmp_path):
    config = _config(eval_indices="0", validation_indices="1")
    result = data.ingest(fsdd, config, str(tmp_path / "out"))
    assert result.counts == {"train": 18, "validation": 9, "eval": 9, "noise": 1}
    assert result.summary["classes"] == list(DIGITS3) and result.skipped == []
    assert result.summary["eval_source"] == "recording indices 0"
    for split, indices in (("train", {2, 3}), ("validation", {1}), ("eval", {0})):
        for row in _read(result.examples_dir, split):
            label, speaker, index = row[SOURCE_FILE][:-4].split("_")
            assert int(index) in indices
            assert row[LABEL_NAME] == label and row[LABEL] == DIGITS3.index(label)
            assert row[SPEAKER] == speaker and row["rate"] == RATE
            original, _ = wav.read_wav(open(os.path.join(fsdd, row[SOURCE_FILE]), "rb").read(),
                                       row[SOURCE_FILE])
            np.testing.assert_allclose(row[AUDIO], original[:, 0], atol=1 / 32768)
    noise = _read(result.examples_dir, "noise")
    assert noise[0][SOURCE_FILE] == data.GENERATED_NOISE and noise[0][LABEL] == -1


def test_fsdd_holdout_speaker_is_speaker_independent(fsdd, tmp_path):
    result = data.ingest(fsdd, _config(holdout_speaker="lucas"), str(tmp_path / "out"))
    splits = {s: _read(result.examples_dir, s) for s in ("train", "validation", "eval")}
    assert {r[SPEAKER] for r in splits["eval"]} == {"lucas"} and len(splits["eval"]) == 12
    assert "lucas" not in {r[SPEAKER] for s in ("train", "validation") for r in splits[s]}
    # validation: whole recording indices of the training speakers
    train_indices = {r[SOURCE_FILE].split("_")[2] for r in splits["train"]}
    val_indices = {r[SOURCE_FILE].split("_")[2] for r in splits["validation"]}
    assert val_indices and not train_indices & val_indices
    assert result.summary["speakers_in_train_and_eval"] == 0


def test_fsdd_repository_root_and_index_errors(fsdd, tmp_path):
    repo = tmp_path / "free-spoken-digit-dataset"
    shutil.copytree(fsdd, repo / "recordings")
    result = data.ingest(str(repo), _config(), str(tmp_path / "out"))
    assert result.summary["source"] == "recordings"
    message = harness.check_rejected(APP, _config(eval_indices="7-9"), fsdd, tmp_path / "o2",
                                     "no recording has an index in '7-9'")
    assert "indices found: 0-3" in message and "--holdout-speaker" in message
    harness.check_rejected(APP, _config(holdout_speaker="nobody"), fsdd, tmp_path / "o3",
                           "'nobody' has no recordings")


def test_speech_commands_lists_noise_and_resampling(commands, tmp_path):
    result = data.ingest(commands, _config(format="speech-commands"), str(tmp_path / "out"))
    rows = {s: _read(result.examples_dir, s) for s in SPLITS}
    speakers = sorted({r[SPEAKER] for s in ("train", "validation", "eval") for r in rows[s]})
    listed = {}
    for split, name in data.LIST_FILES.items():
        with open(os.path.join(commands, name)) as f:
            listed[split] = {line.strip() for line in f if line.strip()}
        assert {r[SOURCE_FILE] for r in rows[split]} == listed[split]
    assert len({r[SPEAKER] for r in rows["eval"]}) == 1 and len(speakers) == 4
    assert result.summary["eval_source"] == "testing_list.txt; validation_list.txt"
    assert sorted(r[SOURCE_FILE] for r in rows["noise"]) == [
        "_background_noise_/brown_noise.wav", "_background_noise_/white_noise.wav"]
    assert result.summary["source_rates_hz"] == {"16000": 24}
    # 16 kHz clips resampled to the tiny preset's 8 kHz: half the samples, same waveform.
    row = rows["train"][0]
    original, _ = wav.read_wav(open(os.path.join(commands, row[SOURCE_FILE]), "rb").read(), "x")
    assert row["rate"] == RATE and len(row[AUDIO]) == (len(original) + 1) // 2
    np.testing.assert_allclose(row[AUDIO], wav.resample(original[:, 0], 16000, RATE),
                               atol=2 / 32768)


def test_speaker_hash_split_and_keywords(commands, tmp_path):
    bare = tmp_path / "no_lists"
    shutil.copytree(commands, bare, ignore=shutil.ignore_patterns("*_list.txt"))
    config = _config(format="speech-commands", keywords=("yes", "no"),
                     validation_percent=30.0, eval_percent=30.0)
    result = data.ingest(str(bare), config, str(tmp_path / "out"))
    assert result.summary["classes"] == ["yes", "no", "_unknown_"]
    by_speaker: dict[str, set[str]] = {}
    for split in ("train", "validation", "eval"):
        for row in _read(result.examples_dir, split):
            by_speaker.setdefault(row[SPEAKER], set()).add(split)
            assert row[LABEL_NAME] == (row[SOURCE_FILE].split("/")[0]
                                       if row[SOURCE_FILE].startswith(("yes", "no"))
                                       else "_unknown_")
    assert all(len(splits) == 1 for splits in by_speaker.values()), by_speaker
    assert all(result.counts[s] > 0 for s in ("train", "validation", "eval"))
    # The Speech Commands README's which_set: sha1 of the speaker id, as a percentage.
    for speaker in by_speaker:
        value = (int(hashlib.sha1(speaker.encode()).hexdigest(), 16) % 2 ** 27) * (
            100.0 / (2 ** 27 - 1))
        assert data._which_set_hash(speaker) == pytest.approx(value)


def test_folders_layout_reads_speakers_from_names(tmp_path):
    path = data.generate_synthetic(str(tmp_path / "clips"), "folders", classes=("on", "off"),
                                   speakers=5, per_speaker=2, lists=False, noise=False)
    result = data.ingest(path, _config(format="folders", validation_percent=20.0,
                                       eval_percent=20.0), str(tmp_path / "out"))
    rows = [r for s in ("train", "validation", "eval") for r in _read(result.examples_dir, s)]
    assert len(rows) == 20
    for row in rows:
        assert re.fullmatch(r"(on|off)/[0-9a-f]{8}_\d\.wav", row[SOURCE_FILE])
        assert row[SPEAKER] == row[SOURCE_FILE].split("/")[1].split("_")[0]
    assert all(result.counts[s] > 0 for s in ("train", "validation", "eval"))


@pytest.mark.parametrize("encoding,tolerance", [
    ("pcm8", 1 / 64), ("pcm24", 1e-4), ("pcm32", 1e-4), ("float32", 1e-4), ("float64", 1e-4),
    ("alaw", 0.02), ("mulaw", 0.02)])
def test_every_encoding_is_read_and_converted_to_16_bit(encoding, tolerance, tmp_path):
    rng = np.random.default_rng(1)
    x = (0.5 * np.sin(2 * np.pi * 300 * np.arange(4000) / 8000)
         + 0.01 * rng.standard_normal(4000)).astype(np.float32)
    samples, info = wav.read_wav(wav.encode_wav(x, 8000, encoding), "clip.wav")
    assert info.sample_rate == 8000 and samples.shape == (4000, 1)
    np.testing.assert_allclose(samples[:, 0], x, atol=tolerance)
    path = data.generate_synthetic(str(tmp_path / "d"), "fsdd", classes=DIGITS3, speakers=3,
                                   per_speaker=3, encoding=encoding)
    result = data.ingest(path, _config(eval_indices="0", validation_indices="1"),
                         str(tmp_path / "out"))
    assert result.summary["source_encodings"] == {
        {"pcm8": "8-bit PCM", "alaw": "8-bit A-law", "mulaw": "8-bit mu-law",
         "float32": "32-bit float", "float64": "64-bit float"}.get(
            encoding, f"{encoding[3:]}-bit PCM"): 27}


def test_stereo_and_other_rates_are_mixed_down_and_resampled():
    t = np.arange(44100) / 44100
    left, right = np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 440 * t)
    stereo = wav.encode_wav(np.stack([left, right], 1).astype(np.float32), 44100, "pcm24")
    clip, info = wav.to_clip(stereo, 8000, "stereo.wav")
    assert info.channels == 2 and info.sample_rate == 44100 and len(clip) == 8000
    expected = 0.75 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)
    np.testing.assert_allclose(clip[100:-100], expected[100:-100], atol=2e-3)


# ------------------------------------------------------------------ transcribe mode


def test_transcribe_strings_are_built_from_each_splits_own_clips(tmp_path):
    path = data.generate_synthetic(str(tmp_path / "digits"), "fsdd", speakers=3,
                                   per_speaker=3)
    config = dataclasses.replace(_config(eval_indices="0", validation_indices="1"),
                                 mode="transcribe")
    result = data.ingest(path, config, str(tmp_path / "out"))
    t = config.transcribe
    assert result.counts == {"train": 30, "validation": t.validation_strings,
                             "eval": t.eval_strings, "noise": 1}
    for split, index in (("validation", "1"), ("eval", "0")):
        for row in _read(result.examples_dir, split):
            sources = row[SOURCE_FILE].split("+")
            assert all(s.split("_")[2][:-4] == index for s in sources), sources
            assert {s.split("_")[1] for s in sources} == {row[SPEAKER]}  # one speaker
            assert "".join(s.split("_")[0] for s in sources) == row[TRANSCRIPT]
            assert t.min_digits <= row[N_DIGITS] == len(row[TRANSCRIPT]) <= t.max_digits
            assert len(row[AUDIO]) == config.clip_samples
    for row in _read(result.examples_dir, "train"):
        assert row[TRANSCRIPT] == row[SOURCE_FILE][0] and row[N_DIGITS] == 1


def test_compose_fits_digits_into_the_recording():
    rng = np.random.default_rng(0)
    clips = [np.ones(900, np.float32) * 0.5 for _ in range(4)]
    pool = strings.DigitPool(clips, ["1", "2", "3", "4"], ["a"] * 4, list("abcd"), 1000)
    config = dataclasses.replace(TINY.transcribe, min_digits=3, max_digits=8,
                                 noise_probability=0.0)
    for _ in range(20):
        s = strings.compose(rng, pool, config, 4000)
        assert len(s.audio) == 4000 and 1 <= len(s.transcript) <= 4  # 4 x 900 samples fit
        assert np.count_nonzero(s.audio) == 900 * len(s.transcript)
    assert strings.character_errors("1234", "1324") == 2
    assert strings.string_metrics(["12", "345"], ["12", "35"]) == {
        "string_accuracy": 0.5, "cer": 0.2, "strings": 2.0}


# ------------------------------------------------------------------ re-ingestion


def test_same_data_maps_to_the_same_untouched_folder(fsdd, tmp_path):
    config = _config()
    first = data.ingest(fsdd, config, str(tmp_path / "out"))
    stamp = os.path.getmtime(os.path.join(first.examples_dir, "train", examples_io.DATA_FILE))
    copy = tmp_path / "copy"
    shutil.copytree(fsdd, copy)
    again = data.ingest(str(copy), config, str(tmp_path / "out"))
    assert again.examples_dir == first.examples_dir
    assert os.path.getmtime(os.path.join(again.examples_dir, "train",
                                         examples_io.DATA_FILE)) == stamp
    other = data.ingest(fsdd, _config(clip_ms=400), str(tmp_path / "out"))
    assert other.examples_dir != first.examples_dir


# ------------------------------------------------------------------ bad input


def _adpcm(path: str) -> None:
    body = bytes(256)
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(body), b"WAVE", b"fmt ", 16,
                         2, 1, 8000, 4000, 256, 4, b"data", len(body))
    with open(path, "wb") as f:
        f.write(header + body)


def _bad_files(folder: str) -> dict[str, str]:
    """Writes one bad file of each kind into an FSDD folder; file name -> expected text."""
    good = open(os.path.join(folder, "0_george_0.wav"), "rb").read()

    def write(name: str, content: bytes) -> str:
        with open(os.path.join(folder, name), "wb") as f:
            f.write(content)
        return name

    tone = np.sin(np.arange(4000) / 3).astype(np.float32) * 0.5
    bad = {
        write("1_george_90.wav", b"ID3\x03 this is an mp3, not a wav"): "not a WAV file",
        write("1_george_91.wav", good[:len(good) // 2]): "truncated WAV",
        write("1_george_92.wav", wav.encode_wav(np.zeros(0, np.float32), 8000)): "empty clip",
        write("1_george_93.wav", wav.encode_wav(np.zeros(4000, np.float32), 8000)):
            "silent clip",
        write("1_george_95.wav", wav.encode_wav(tone, 4000)): "4000 Hz cannot be resampled",
        write("george_96.wav", good): "expected {label}_{speaker}_{index}.wav",
    }
    _adpcm(os.path.join(folder, "1_george_94.wav"))
    bad["1_george_94.wav"] = "unsupported WAV encoding: 4-bit Microsoft ADPCM"
    return bad


def test_each_bad_file_stops_ingestion_naming_it(fsdd, tmp_path):
    probe = tmp_path / "probe"
    probe.mkdir()
    shutil.copy(os.path.join(fsdd, "0_george_0.wav"), probe)
    for name, expected in _bad_files(str(probe)).items():
        folder = tmp_path / name.replace(".wav", "")
        shutil.copytree(fsdd, folder)
        shutil.copy(probe / name, folder / name)
        message = harness.check_rejected(APP, _config(), str(folder), tmp_path / "out" / name,
                                         expected)
        assert message.startswith(str(folder / name)), message
        assert "expected" in message


def test_skip_bad_files_skips_reports_and_counts_them(fsdd, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(fsdd, folder)
    bad = _bad_files(str(folder))
    lines: list[str] = []
    result = data.ingest(str(folder), _config(skip_bad_files=True), str(tmp_path / "out"),
                         lines.append)
    assert sorted(f for f, _ in result.skipped) == sorted(bad)
    for file, reason in result.skipped:
        assert bad[file] in reason
        assert any(line.startswith(f"skipped {file}: ") for line in lines)
    assert sum(result.counts[s] for s in ("train", "validation", "eval")) == 36


def test_empty_class_folder(commands, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(commands, folder)
    os.makedirs(folder / "down")
    message = harness.check_rejected(APP, _config(format="speech-commands"), str(folder),
                                     tmp_path / "out", "empty class folder")
    assert message.startswith(str(folder / "down"))
    result = data.ingest(str(folder), _config(format="speech-commands", skip_bad_files=True),
                         str(tmp_path / "out"))
    assert ("down/", "empty class folder; expected WAV clips of 'down'") in result.skipped
    assert "down" not in result.summary["classes"]


def test_list_naming_a_missing_clip(commands, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(commands, folder)
    with open(folder / "testing_list.txt", "a") as f:
        f.write("yes/deadbeef_nohash_0.wav\n")
    message = harness.check_rejected(APP, _config(format="speech-commands"), str(folder),
                                     tmp_path / "out", "names clip 'yes/deadbeef_nohash_0.wav'")
    assert message.startswith(str(folder / "testing_list.txt")) and "line 7" in message
    assert "--subset" in message
    subset = data.ingest(str(folder), _config(format="speech-commands", subset=True),
                         str(tmp_path / "out"))
    assert subset.summary["list_entries_absent"] == {"testing_list.txt": 1}
    skipped = data.ingest(str(folder), _config(format="speech-commands", skip_bad_files=True),
                          str(tmp_path / "out"))
    assert [f for f, _ in skipped.skipped] == ["testing_list.txt:7"]


def test_not_a_folder_and_no_clips(tmp_path):
    harness.check_rejected(APP, _config(), str(tmp_path / "missing"), tmp_path / "out",
                           "no such folder")
    (tmp_path / "empty").mkdir()
    harness.check_rejected(APP, _config(), str(tmp_path / "empty"), tmp_path / "out",
                           "no WAV files")
