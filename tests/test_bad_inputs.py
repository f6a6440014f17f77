"""The bad-input catalogue: every app's readers and command lines, ``suite serve``, and the
model server's gRPC and REST API, each given something wrong.

Each command-line case asserts the exit status, that the message names the file, field or
argument and what was expected, that no traceback reaches the user, and that the workspace
and model repository are unchanged. Server cases assert the status code and message, and
that the server goes on answering.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib
import io
import json
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import suite  # noqa: F401

VIBRATION = "apps.sensor_vibration.cli"
MEDICAL = "apps.medical_scans.cli"
CLICKS = "apps.clickstreams.cli"
SPEECH = "apps.speech.cli"
DEFECTS = "apps.defect_images.cli"
FRONT = "apps.frontdoor"


@dataclass(frozen=True)
class Case:
    """One bad input: ``build(tmp)`` writes what it needs under tmp and returns the argv of
    ``module``'s ``main``; the run must exit ``code`` with every fragment in its stderr."""

    id: str
    module: str
    build: Callable[[Path], list[str]]
    fragments: tuple[str, ...]
    code: int = 2


# -- sensor-vibration ---------------------------------------------------------------------------


def _recordings(tmp: Path, fmt: str = "mat", n_samples: int = 4096) -> Path:
    from apps.sensor_vibration import data

    return Path(data.generate_synthetic(str(tmp / "raw"), fmt=fmt, classes=("Normal", "IR007"),
                                        loads=(0,), n_samples=n_samples))


def _vibration_run(raw: Path, tmp: Path, *extra: str) -> list[str]:
    return ["run", "--data", str(raw), "--workspace", str(tmp / "ws"),
            "--set", 'data.classes=["Normal", "IR007"]', *extra]


def _first(raw: Path, suffix: str) -> Path:
    return sorted(raw.glob(f"*{suffix}"))[-1]


def _manifest_rows(raw: Path, edit: Callable[[list[str]], list[str]]) -> None:
    manifest = raw / "manifest.csv"
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join(edit(lines)) + "\n")


def v_missing_file(tmp):
    raw = _recordings(tmp)
    _manifest_rows(raw, lambda rows: rows + [
        "missing_recording.mat,999,IR007,InnerRace,0.007,0,1797,X999_DE_time,4096"])
    return _vibration_run(raw, tmp)


def v_text_as_mat(tmp):
    raw = _recordings(tmp)
    _first(raw, ".mat").write_text("time,DE\n0,0.1\n")
    return _vibration_run(raw, tmp)


def v_truncated_mat(tmp):
    raw = _recordings(tmp)
    path = _first(raw, ".mat")
    path.write_bytes(path.read_bytes()[:400])
    return _vibration_run(raw, tmp)


def v_missing_channel(tmp):
    return _vibration_run(_recordings(tmp), tmp, "--channels", "DE,BA")


def v_short_signal(tmp):
    return _vibration_run(_recordings(tmp, n_samples=200), tmp)


def v_bad_csv_cell(tmp):
    raw = _recordings(tmp, fmt="csv")
    path = _first(raw, ".csv")
    lines = path.read_text().splitlines()
    lines[2] = "abc," + lines[2].split(",", 1)[1]
    path.write_text("\n".join(lines) + "\n")
    return _vibration_run(raw, tmp, "--format", "csv")


def v_unknown_label(tmp):
    raw = _recordings(tmp)
    _manifest_rows(raw, lambda rows: rows[:1] + [rows[1].replace("Normal", "Broken", 1)]
                   + rows[2:])
    return _vibration_run(raw, tmp)


def v_one_class_only(tmp):
    raw = _recordings(tmp)
    _manifest_rows(raw, lambda rows: [r for r in rows if "IR007" not in r])
    return _vibration_run(raw, tmp)


def v_missing_column(tmp):
    raw = _recordings(tmp)
    _manifest_rows(raw, lambda rows: [",".join(c for i, c in enumerate(r.split(","))
                                               if i != 5) for r in rows])
    return _vibration_run(raw, tmp)


def v_set(value: str):
    return lambda tmp: _vibration_run(_recordings(tmp), tmp, "--set", value)


def v_holdout_load(tmp):
    return _vibration_run(_recordings(tmp), tmp, "--holdout-load", "7")


def v_no_data_folder(tmp):
    return _vibration_run(tmp / "nowhere", tmp)


def v_predict_missing_file(tmp):
    (tmp / "model").mkdir()
    return ["predict", "--model", str(tmp / "model"), str(tmp / "pump7.mat")]


def v_predict_no_model(tmp):
    return ["predict", str(tmp / "pump7.mat")]


def v_predict_model_not_there(tmp):
    raw = _recordings(tmp)
    return ["predict", "--model", str(tmp / "no_model"), str(_first(raw, ".mat"))]


# -- medical-scans ------------------------------------------------------------------------------


def _scans(tmp: Path, fmt: str = "folders") -> Path:
    from apps.medical_scans import data

    name = "scans.npz" if fmt == "npz" else "scans"
    return Path(data.generate_synthetic(str(tmp / name), fmt, n_per_class=8, size=24))


def _medical_run(path: Path, tmp: Path, *extra: str) -> list[str]:
    return ["run", "--data", str(path), "--workspace", str(tmp / "ws"), *extra]


def m_corrupt_jpeg(tmp):
    scans = _scans(tmp)
    (scans / "PNEUMONIA" / "person999_virus_1.jpeg").write_bytes(b"\xff\xd8\xff\xe0 no jpeg")
    return _medical_run(scans, tmp)


def m_not_an_image(tmp):
    scans = _scans(tmp)
    (scans / "NORMAL" / "notes.txt").write_text("not an image")
    return _medical_run(scans, tmp)


def m_empty_class(tmp):
    scans = _scans(tmp)
    for f in (scans / "NORMAL").iterdir():
        f.unlink()
    return _medical_run(scans, tmp)


def m_missing_class(tmp):
    scans = _scans(tmp)
    (scans / "PNEUMONIA").rename(scans / "PNEUMONIA_old")
    return _medical_run(scans, tmp)


def _npz(tmp: Path, edit: Callable[[dict], dict]) -> Path:
    path = _scans(tmp, "npz")
    with np.load(path) as archive:
        arrays = edit(dict(archive))
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def m_npz_missing_key(tmp):
    path = _npz(tmp, lambda a: {k: v for k, v in a.items() if k != "train_labels"})
    return _medical_run(path, tmp, "--format", "npz")


def m_npz_count_mismatch(tmp):
    path = _npz(tmp, lambda a: {**a, "train_labels": a["train_labels"][:-1]})
    return _medical_run(path, tmp, "--format", "npz")


def m_npz_bad_labels(tmp):
    path = _npz(tmp, lambda a: {**a, "train_labels": a["train_labels"] + 3})
    return _medical_run(path, tmp, "--format", "npz")


def _dicom_folder(tmp: Path, edit: Callable) -> Path:
    scans = _scans(tmp, "dicom")
    path = sorted((scans / "NORMAL").iterdir())[0]
    edit(path)
    return scans


def m_dicom_no_pixels(tmp):
    def drop(path):
        import pydicom

        ds = pydicom.dcmread(path)
        del ds.PixelData
        ds.save_as(path)
    return _medical_run(_dicom_folder(tmp, drop), tmp, "--format", "dicom")


def m_dicom_wrong_syntax(tmp):
    def syntax(path):
        # The file says RLE Lossless (same UID length as Explicit VR Little Endian), but its
        # pixel data is not RLE-encoded: no decoder can read it.
        raw = path.read_bytes()
        path.write_bytes(raw.replace(b"1.2.840.10008.1.2.1\0", b"1.2.840.10008.1.2.5\0", 1))
    return _medical_run(_dicom_folder(tmp, syntax), tmp, "--format", "dicom")


def m_dicom_unknown_syntax(tmp):
    def syntax(path):
        # A transfer syntax UID no standard defines (same length as the one written).
        raw = path.read_bytes()
        path.write_bytes(raw.replace(b"1.2.840.10008.1.2.1\0", b"1.2.840.99999.9.9.9\0", 1))
    return _medical_run(_dicom_folder(tmp, syntax), tmp, "--format", "dicom")


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(
        ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def decompression_bomb_png(side: int = 60000) -> bytes:
    """A small file declaring a side x side grayscale image (what a bomb looks like to a
    reader that trusts the header)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * (side + 1) * 4)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", rows)
            + _png_chunk(b"IEND", b""))


def m_decompression_bomb(tmp):
    scans = _scans(tmp)
    (scans / "NORMAL" / "IM-9999-0001.png").write_bytes(decompression_bomb_png())
    return _medical_run(scans, tmp)


def m_image_size(tmp):
    return _medical_run(_scans(tmp), tmp, "--image-size", "4")


def m_predict_missing_image(tmp):
    return ["predict", "--model", str(tmp / "model"), str(tmp / "scan.png")]


def m_predict_unreachable_server(tmp):
    scans = _scans(tmp)
    image = sorted((scans / "NORMAL").iterdir())[0]
    return ["predict", "--server", "127.0.0.1:1", str(image)]


# -- clickstreams -------------------------------------------------------------------------------


def _log(tmp: Path, text: str, name: str = "events.tsv") -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def _clicks_run(path: Path, tmp: Path, *extra: str) -> list[str]:
    return ["run", "--data", str(path), "--workspace", str(tmp / "ws"), *extra]


def c_log(text: str, *extra: str):
    return lambda tmp: _clicks_run(_log(tmp, text), tmp, *extra)


def c_recommend_k(k: str):
    return lambda tmp: ["recommend", "--model", str(tmp / "model"), "-k", k]


# -- speech -------------------------------------------------------------------------------------


def _clips(tmp: Path, fmt: str = "fsdd") -> Path:
    from apps.speech import data

    return Path(data.generate_synthetic(str(tmp / "raw"), fmt, classes=("0", "1"), speakers=3,
                                        per_speaker=4, noise=False))


def _speech_run(raw: Path, tmp: Path, *extra: str) -> list[str]:
    return ["run", "--data", str(raw), "--workspace", str(tmp / "ws"), "--preset", "tiny",
            *extra]


def _a_clip(raw: Path) -> Path:
    return sorted(raw.rglob("*.wav"))[0]


def sp_gigabyte_header(tmp):
    raw = _clips(tmp)
    clip = _a_clip(raw)
    data = bytearray(clip.read_bytes())
    at = data.index(b"data")
    data[at + 4:at + 8] = struct.pack("<I", 0xFFFF0000)  # about 4 GB of audio declared
    clip.write_bytes(bytes(data))
    return _speech_run(raw, tmp)


def sp_text_as_wav(tmp):
    raw = _clips(tmp)
    _a_clip(raw).write_text("RIFF? no: a shift report\n")
    return _speech_run(raw, tmp)


def sp_silent_clip(tmp):
    raw = _clips(tmp)
    clip = _a_clip(raw)
    data = bytearray(clip.read_bytes())
    at = data.index(b"data") + 8
    data[at:] = bytes(len(data) - at)
    clip.write_bytes(bytes(data))
    return _speech_run(raw, tmp)


def sp_odd_name(tmp):
    raw = _clips(tmp)
    (raw / "hello.wav").write_bytes(_a_clip(raw).read_bytes())
    return _speech_run(raw, tmp)


def sp_holdout_speaker(tmp):
    return _speech_run(_clips(tmp), tmp, "--holdout-speaker", "nobody")


def sp_missing_list_entry(tmp):
    raw = _clips(tmp, "speech-commands")
    with open(raw / "testing_list.txt", "a") as f:
        f.write("0/ghost_nohash_0.wav\n")
    return _speech_run(raw, tmp, "--format", "speech-commands")


def sp_predict_missing_clip(tmp):
    # Through a server: the clips are read before any connection is made.
    return ["predict", "--server", "127.0.0.1:9", str(tmp / "no_such.wav")]


# -- defect images ------------------------------------------------------------------------------


def _surfaces(tmp: Path, fmt: str = "folders") -> Path:
    from apps.defect_images import data

    return Path(data.generate_synthetic(str(tmp / "raw"), fmt, classes=("ok", "scratch"),
                                        n_per_class=6, size=32))


def _defects_run(raw: Path, tmp: Path, *extra: str) -> list[str]:
    return ["run", "--data", str(raw), "--workspace", str(tmp / "ws"), "--preset", "tiny",
            *extra]


def d_truncated_png(tmp):
    raw = _surfaces(tmp)
    image = sorted((raw / "scratch").glob("*.png"))[0]
    image.write_bytes(image.read_bytes()[:60])
    return _defects_run(raw, tmp)


def d_not_an_image(tmp):
    raw = _surfaces(tmp)
    (raw / "ok" / "ok_99.png").write_text("camera offline\n")
    return _defects_run(raw, tmp)


def d_empty_class(tmp):
    raw = _surfaces(tmp)
    (raw / "dent").mkdir()
    return _defects_run(raw, tmp)


def d_prefix_mismatch(tmp):
    raw = _surfaces(tmp, "prefix")
    first = sorted(p for p in raw.iterdir() if p.suffix == ".png")[0]
    first.rename(raw / "IMG0001.png")
    return _defects_run(raw, tmp, "--format", "prefix")


def d_no_good_class(tmp):
    raw = _surfaces(tmp)
    (raw / "ok").rename(raw / "dent")
    return _defects_run(raw, tmp, "--mode", "anomaly")


def d_broken_voc(tmp):
    raw = _surfaces(tmp)
    annotation = sorted((raw / "annotations").glob("*.xml"))[0]
    annotation.write_text("<annotation><object><name>scratch</name>")
    return _defects_run(raw, tmp)


def d_predict_missing_image(tmp):
    return ["predict", "--model", str(tmp / "models"), str(tmp / "no_such.png")]


# -- suite serve --------------------------------------------------------------------------------


def s_serve(*extra: str):
    return lambda tmp: ["serve", "--base", str(tmp / "models"), "--config-dir",
                        str(tmp / "ws"), *extra]


CASES = [
    Case("vibration: manifest row naming a missing file", VIBRATION, v_missing_file,
         ("manifest.csv", "line 4", "missing_recording.mat", "not found")),
    Case("vibration: text file named .mat", VIBRATION, v_text_as_mat,
         (".mat", "not a MATLAB file")),
    Case("vibration: truncated .mat", VIBRATION, v_truncated_mat,
         (".mat", "truncated or damaged MATLAB file")),
    Case("vibration: missing channel key", VIBRATION, v_missing_channel,
         ("no base (BA) channel", "expected a key like")),
    Case("vibration: signal shorter than a window", VIBRATION, v_short_signal,
         ("expected at least one window of 256 samples",)),
    Case("vibration: non-numeric CSV cell", VIBRATION, v_bad_csv_cell,
         (".csv", "line 3", "column 'DE'", "expected a number, got 'abc'")),
    Case("vibration: unknown label", VIBRATION, v_unknown_label,
         ("manifest.csv", "line 2", "unknown label 'Broken'")),
    Case("vibration: every row one class", VIBRATION, v_one_class_only,
         ("manifest.csv", "no train examples of class(es) ['IR007']",
          "data.allow_missing_classes")),
    Case("vibration: manifest without load_hp", VIBRATION, v_missing_column,
         ("manifest.csv", "missing required column(s) ['load_hp']")),
    Case("vibration: --set train.epochs=many", VIBRATION, v_set("train.epochs=many"),
         ('train.epochs: expected an integer, got "many"',)),
    Case("vibration: --set data.window=\"big\"", VIBRATION, v_set('data.window="big"'),
         ('data.window: expected an integer, got "big"',)),
    Case("vibration: --set data.window=2.5", VIBRATION, v_set("data.window=2.5"),
         ("data.window: expected an integer, got 2.5",)),
    Case("vibration: --set no.such.field=1", VIBRATION, v_set("no.such.field=1"),
         ("unknown config field 'no.such.field'",
          "card, data, drift, edge, energy, eval, model, model_name, train")),
    Case("vibration: --set edge.max_latency_ratio=0.5", VIBRATION,
         v_set("edge.max_latency_ratio=0.5"),
         ("edge.max_latency_ratio: expected >= 1.0, got 0.5",)),
    Case("vibration: --set energy.country_iso_code=Germany", VIBRATION,
         v_set('energy.country_iso_code="Germany"'),
         ("energy.country_iso_code: expected an ISO 3166-1 alpha-3 code such as DEU or USA, "
          "got 'Germany'",)),
    Case("vibration: --set drift.max_jensen_shannon=-0.1", VIBRATION,
         v_set("drift.max_jensen_shannon=-0.1"),
         ("drift.max_jensen_shannon: expected >= 0.0, got -0.1",)),
    Case("vibration: --set card.bootstrap_samples=3", VIBRATION,
         v_set("card.bootstrap_samples=3"),
         ("card.bootstrap_samples: expected >= 10, got 3",)),
    Case("vibration: --set train.epochs=0", VIBRATION, v_set("train.epochs=0"),
         ("train.epochs: expected >= 1, got 0",)),
    Case("vibration: --set without =", VIBRATION, v_set("train.epochs"),
         ("--set 'train.epochs': expected FIELD=VALUE",)),
    Case("vibration: --holdout-load not in the data", VIBRATION, v_holdout_load,
         ("holdout_load=7 is not present", "loads found: [0]")),
    Case("vibration: data folder missing", VIBRATION, v_no_data_folder,
         ("nowhere", "expected a data folder holding manifest.csv")),
    Case("vibration: --epochs 0", VIBRATION,
         lambda tmp: ["run", "--workspace", str(tmp / "ws"), "--epochs", "0"],
         ("argument --epochs: expected an integer >= 1, got 0",)),
    Case("vibration: predict, missing recording", VIBRATION, v_predict_missing_file,
         ("pump7.mat", "expected a MATLAB .mat file")),
    Case("vibration: predict without --model or --server", VIBRATION, v_predict_no_model,
         ("expected either --model DIR", "--server HOST:PORT")),
    Case("vibration: predict, no model there", VIBRATION, v_predict_model_not_there,
         ("no_model", "expected a SavedModel folder or a model base path")),
    Case("medical: corrupt JPEG", MEDICAL, m_corrupt_jpeg,
         ("person999_virus_1.jpeg", "cannot decode the image")),
    Case("medical: non-image file in a class folder", MEDICAL, m_not_an_image,
         ("notes.txt", "not an image file", "expected a JPEG or PNG image")),
    Case("medical: empty class folder", MEDICAL, m_empty_class,
         ("NORMAL", "empty class folder")),
    Case("medical: missing class folder", MEDICAL, m_missing_class,
         ("PNEUMONIA", "missing class folder")),
    Case("medical: npz without train_labels", MEDICAL, m_npz_missing_key,
         ("scans.npz", "missing array 'train_labels'")),
    Case("medical: npz images and labels differ in count", MEDICAL, m_npz_count_mismatch,
         ("scans.npz", "expected one label per image")),
    Case("medical: npz labels outside 0/1", MEDICAL, m_npz_bad_labels,
         ("scans.npz", "expected 0 (NORMAL) or 1 (PNEUMONIA)")),
    Case("medical: DICOM without pixel data", MEDICAL, m_dicom_no_pixels,
         (".dcm", "no pixel data")),
    Case("medical: DICOM whose pixel data its transfer syntax cannot decode", MEDICAL,
         m_dicom_wrong_syntax, (".dcm", "cannot decode the pixel data (RLE Lossless)")),
    Case("medical: DICOM with an unknown transfer syntax", MEDICAL, m_dicom_unknown_syntax,
         (".dcm", "1.2.840.99999.9.9.9")),
    Case("medical: decompression bomb", MEDICAL, m_decompression_bomb,
         ("IM-9999-0001.png", "decompression bomb")),
    Case("medical: --image-size 4", MEDICAL, m_image_size,
         ("model.image_size: expected at least 16 pixels, got 4",)),
    Case("medical: --format tiff", MEDICAL, lambda tmp: ["run", "--format", "tiff"],
         ("argument --format: invalid choice: 'tiff'",)),
    Case("medical: predict, missing image", MEDICAL, m_predict_missing_image,
         ("scan.png", "no such file", "1 file(s) could not be read")),
    Case("medical: predict, server unreachable", MEDICAL, m_predict_unreachable_server,
         ("server 127.0.0.1:1", "UNAVAILABLE")),
    Case("clickstreams: unparsable time", CLICKS,
         c_log("SessionId\tItemId\tTime\n1\t10\t1700000000\n1\t11\tlater\n"),
         ("events.tsv", "line 3", "column 'Time'", "expected unix seconds, got 'later'")),
    Case("clickstreams: row without its Time value", CLICKS,
         c_log("SessionId\tItemId\tTime\n1\t10\t1700000000\n1\t11\n"),
         ("events.tsv", "line 3", "no value for column(s) ['Time']")),
    Case("clickstreams: empty log", CLICKS, c_log(""), ("events.tsv", "empty file")),
    Case("clickstreams: header only", CLICKS, c_log("SessionId\tItemId\tTime\n"),
         ("events.tsv", "no event rows after the header")),
    Case("clickstreams: wrong separator", CLICKS,
         c_log("SessionId,ItemId,Time\n1,10,1700000000\n"),
         ("events.tsv", "line 1", "found one column", "comma")),
    Case("clickstreams: negative item id", CLICKS,
         c_log("SessionId\tItemId\tTime\n1\t-10\t1700000000\n"),
         ("events.tsv", "line 2", "column 'ItemId'", "expected a non-negative integer id")),
    Case("clickstreams: log file missing", CLICKS,
         lambda tmp: _clicks_run(tmp / "gone.tsv", tmp), ("gone.tsv", "no such file")),
    Case("clickstreams: --columns with two names", CLICKS,
         c_log("a,b\n1,2\n", "--columns", "a,b"), ("expected SESSION,ITEM,TIME[,EVENT]",)),
    Case("clickstreams: --set train.epochs=many", CLICKS,
         c_log("SessionId\tItemId\tTime\n1\t10\t1700000000\n", "--set", "train.epochs=many"),
         ('train.epochs: expected an integer, got "many"',)),
    Case("clickstreams: recommend -k 0", CLICKS, c_recommend_k("0"),
         ("argument -k: expected an integer >= 1, got 0",)),
    Case("clickstreams: recommend -k -3", CLICKS, c_recommend_k("-3"),
         ("argument -k: expected an integer >= 1, got -3",)),
    Case("clickstreams: recommend, no model there", CLICKS,
         lambda tmp: ["recommend", "--model", str(tmp / "no_model"), "--history", "1"],
         ("no_model", "expected a SavedModel folder")),
    Case("speech: WAV header declaring gigabytes of audio", SPEECH, sp_gigabyte_header,
         ("raw", ".wav", "truncated WAV")),
    Case("speech: text file named .wav", SPEECH, sp_text_as_wav,
         (".wav", "not a WAV file", "expected a RIFF/WAVE")),
    Case("speech: silent clip", SPEECH, sp_silent_clip, (".wav", "silent clip")),
    Case("speech: FSDD file name without label, speaker and index", SPEECH, sp_odd_name,
         ("hello.wav",)),
    Case("speech: --holdout-speaker not in the data", SPEECH, sp_holdout_speaker,
         ("nobody",)),
    Case("speech: testing_list.txt names a missing clip", SPEECH, sp_missing_list_entry,
         ("testing_list.txt", "line", "ghost_nohash_0.wav")),
    Case("speech: --set features.normalize=\"loudness\"", SPEECH,
         lambda tmp: _speech_run(_clips(tmp), tmp, "--set", 'features.normalize="loudness"'),
         ("features.normalize", "batch", "utterance")),
    Case("speech: predict, missing clip", SPEECH, sp_predict_missing_clip,
         ("no_such.wav",)),
    Case("defects: truncated PNG", DEFECTS, d_truncated_png,
         ("scratch", ".png", "cannot decode the image")),
    Case("defects: non-image file with an image name", DEFECTS, d_not_an_image,
         ("ok_99.png", "cannot decode the image (damaged, or not an image file)")),
    Case("defects: empty class folder", DEFECTS, d_empty_class, ("dent",)),
    Case("defects: file name the prefix pattern does not match", DEFECTS, d_prefix_mismatch,
         ("IMG0001.png",)),
    Case("defects: anomaly mode without a good-part class", DEFECTS, d_no_good_class,
         ("--good-classes",)),
    Case("defects: VOC XML that is not well-formed", DEFECTS, d_broken_voc, (".xml",)),
    Case("defects: predict, missing image", DEFECTS, d_predict_missing_image,
         ("no_such.png",)),
    Case("serve: --grpc-port 99999", FRONT, s_serve("--grpc-port", "99999"),
         ("argument --grpc-port: expected from 0 to 65535, got 99999",)),
    Case("serve: --rest-port 99999", FRONT, s_serve("--rest-port", "99999"),
         ("argument --rest-port: expected from 0 to 65535, got 99999",)),
    Case("serve: --max-batch-size 0", FRONT, s_serve("--max-batch-size", "0"),
         ("argument --max-batch-size: expected >= 1, got 0",)),
    Case("serve: no pushed model", FRONT, s_serve(), ("models", "no pushed models under")),
]


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


def _main(module: str, argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = importlib.import_module(module).main(argv)
        except SystemExit as e:  # argparse
            code = e.code
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_stops_cleanly(case, tmp_path, monkeypatch):
    monkeypatch.delenv("SUITE_DEBUG", raising=False)
    argv = case.build(tmp_path)
    watched = [tmp_path / "ws", tmp_path / "models"]
    before = [_tree(p) for p in watched]
    code, out, err = _main(case.module, argv)
    assert code == case.code, (out, err)
    for fragment in case.fragments:
        assert fragment in err, (fragment, err)
    assert "Traceback" not in out + err
    # Only the error itself: no raw Python warning or library log line reaches the user.
    assert not [line for line in err.splitlines() if "Warning" in line or line[:1] in "WIE"
                and line[1:5].isdigit()], err
    assert [_tree(p) for p in watched] == before


def test_suite_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("SUITE_DEBUG", "1")
    with pytest.raises(ValueError, match="train.epochs: expected an integer"):
        _main(VIBRATION, v_set("train.epochs=many")(tmp_path))


def test_csv_with_a_bom_and_crlf_line_ends_is_read(tmp_path):
    from apps.clickstreams import data as clicks
    from apps.clickstreams.config import DataConfig as ClicksData
    from apps.sensor_vibration import data as vibration

    raw = _recordings(tmp_path, fmt="csv")
    path = _first(raw, ".csv")
    expected = vibration.read_csv_signal(str(path), ["DE"])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    np.testing.assert_array_equal(vibration.read_csv_signal(str(path), ["DE"]), expected)

    log = tmp_path / "events.csv"
    log.write_bytes(b"\xef\xbb\xbfsession_id,item_id,timestamp\r\ns1,a,2024-03-01T10:00:00\r\n"
                    b"s1,b,2024-03-01T10:01:00\r\n")
    events = clicks.read_events(str(log), ClicksData(format="csv"))
    assert events.sessions == ["s1", "s1"] and events.items == ["a", "b"]


def test_a_file_name_that_is_not_utf8_is_read_and_recorded(tmp_path):
    from apps.medical_scans import data
    from apps.medical_scans.config import DataConfig

    scans = _scans(tmp_path)
    png = sorted((scans / "NORMAL").iterdir())[0]
    odd = os.path.join(os.fsencode(scans / "NORMAL"), b"IM-0777-\xff-0001.png")
    os.rename(png, odd)
    result = data.ingest(str(scans), DataConfig(allow_missing_classes=True),
                         str(tmp_path / "out"))
    assert sum(result.counts.values()) == 16 and result.skipped == []
    import tensorflow as tf

    from suite.examples_io import raw_dataset

    sources = [tf.train.Example.FromString(r.numpy()).features.feature["source_file"]
               .bytes_list.value[0] for split in result.counts
               for r in raw_dataset([os.path.join(result.examples_dir, split, "data.tfrecord")])]
    assert b"NORMAL/IM-0777-\\xff-0001.png" in sources


# -- the model server -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(pushed_model):
    from serving.repository import ModelEntry
    from serving.server import ModelServer, ServerOptions

    entry = ModelEntry("sensor_vibration", pushed_model.base_path)
    with ModelServer([entry], ServerOptions(grpc_port=0, rest_port=0,
                                            max_request_bytes=1 << 20)) as running:
        yield running


def _rest(server, method: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
    host, port = server.rest_url.rsplit("/", 1)[-1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    status, text = response.status, response.read()
    conn.close()
    return status, json.loads(text)


REST_CASES = [
    ("model name with ../", "GET", "/v1/models/../../etc/passwd", None, 400,
     "Malformed request: GET /v1/models/../../etc/passwd"),
    ("model name with an encoded ../", "GET", "/v1/models/..%2F..%2Fetc", None, 404,
     "Could not find any versions of model ../../etc"),
    ("arrays nested 10,000 deep", "POST", "/v1/models/sensor_vibration:predict",
     b'{"instances": ' + b"[" * 10000 + b"]" * 10000 + b"}", 400,
     "JSON Parse error: nested deeper than"),
    ("not JSON", "POST", "/v1/models/sensor_vibration:predict", b"{nope", 400,
     "JSON Parse error"),
]


@pytest.mark.parametrize("name, method, path, body, status, message", REST_CASES,
                         ids=[c[0] for c in REST_CASES])
def test_bad_rest_requests_get_a_status_and_the_server_goes_on(server, name, method, path,
                                                             body, status, message):
    got, document = _rest(server, method, path, body)
    assert got == status, document
    assert message in document["error"], document
    assert _rest(server, "GET", "/v1/models/sensor_vibration")[0] == 200


def test_grpc_unknown_signature_and_model(server, pushed_model):
    import grpc

    from serving.clients import GrpcClient, ServingClientError

    examples = np.array(pushed_model.eval_examples[:1], dtype=object)
    with GrpcClient(server.grpc_target, retries=0) as client:
        with pytest.raises(ServingClientError) as error:
            client.predict("sensor_vibration", {"examples": examples}, signature="nope")
        assert error.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert 'Serving signature key "nope" not found' in error.value.message
        with pytest.raises(ServingClientError) as error:
            client.predict("../etc", {"examples": examples})
        assert error.value.code == grpc.StatusCode.NOT_FOUND
        assert "Latest(../etc)" in error.value.message
        assert client.predict("sensor_vibration", {"examples": examples}).outputs
