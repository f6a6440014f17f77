"""Tests of apps.sensor_vibration.data on generated data (never the real CWRU files)."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from apps.sensor_vibration import data
from apps.sensor_vibration.config import DataConfig
from apps.sensor_vibration.data import DataError
from apps.sensor_vibration.features import SPLITS

CLASSES = ("Normal", "IR007", "OR014")
N = 4096  # 4 blocks of 1024 samples: 7 windows of 256 (hop 128) per block
CONFIG = DataConfig(channels=("DE", "FE"), classes=CLASSES, window=256, stride=128,
                    split_blocks=4)
FEATURES = {"signal", "label", "label_name", "load", "rpm", "source_file", "window_start"}


@pytest.fixture(scope="module")
def mat_dir(tmp_path_factory) -> str:
    return data.generate_synthetic(str(tmp_path_factory.mktemp("mat")), classes=CLASSES,
                                   n_samples=N)


def _copy(src: str, dst: Path) -> str:
    shutil.copytree(src, dst)
    return str(dst)


def _edit_manifest(data_dir: str, edit) -> str:
    """Rewrites manifest.csv as edit(header, rows) returns it; returns the manifest path."""
    path = os.path.join(data_dir, "manifest.csv")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = edit(rows[0], rows[1:])
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *body])
    return path


def _write_single_manifest(data_dir: Path, name: str, label: str = "Normal",
                           number: str = "") -> None:
    with open(data_dir / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(data.MANIFEST_COLUMNS)
        w.writerow([name, number, label, "Normal", "", 0, 1797, "", ""])


def _read_examples(path: str) -> list:
    import tensorflow as tf

    return [tf.train.Example.FromString(r)
            for r in tf.data.TFRecordDataset(path).as_numpy_iterator()]


def _overlaps(a: list[int], b: list[int], window: int) -> bool:
    return any(s < t + window and t < s + window for s in a for t in b)


# ------------------------------------------------------------------ generation, reading


def test_generated_mat_round_trips_through_load_recordings(mat_dir):
    recs = data.load_recordings(mat_dir, CONFIG)
    assert len(recs) == len(CLASSES) * 3
    assert {(r.label, r.load) for r in recs} == {(c, load) for c in CLASSES for load in (0, 1, 2)}
    for r in recs:
        assert r.signal.shape == (N, 2) and r.signal.dtype == np.float32
        assert r.label_id == CLASSES.index(r.label)
        assert r.rpm == {0: 1797, 1: 1772, 2: 1750}[r.load]
        assert os.path.isabs(r.path) and r.path.endswith(r.source_file)
        assert np.all(np.isfinite(r.signal))
    with open(os.path.join(mat_dir, "manifest.csv")) as f:
        assert next(csv.reader(f)) == list(data.MANIFEST_COLUMNS)
    # Faults are impulsive, the healthy bearing is not; FE is the weaker sensor.
    by = {(r.label, r.load): r.signal for r in recs}

    def kurt(x):
        return float(np.mean((x - x.mean()) ** 4) / np.var(x) ** 2 - 3)

    assert kurt(by["Normal", 0][:, 0]) < 1 < kurt(by["IR007", 0][:, 0]) < kurt(by["OR014", 0][:, 0])
    assert by["OR014", 0][:, 1].std() < by["OR014", 0][:, 0].std()


def test_generation_is_byte_deterministic(tmp_path, mat_dir):
    again = data.generate_synthetic(str(tmp_path / "again"), classes=CLASSES, n_samples=N)
    names = sorted(os.listdir(mat_dir))
    assert names == sorted(os.listdir(again))
    for name in names:
        assert Path(mat_dir, name).read_bytes() == Path(again, name).read_bytes(), name
    other = data.generate_synthetic(str(tmp_path / "other"), classes=("IR007",), loads=(0,),
                                    n_samples=N, seed=1)
    a = scipy.io.loadmat(os.path.join(mat_dir, "12k_Drive_End_IR007_0_105.mat"))
    b = scipy.io.loadmat(os.path.join(other, "12k_Drive_End_IR007_0_105.mat"))
    assert not np.allclose(a["X105_DE_time"], b["X105_DE_time"])


def test_generated_csv_round_trips_and_matches_mat(tmp_path, mat_dir):
    csv_dir = data.generate_synthetic(str(tmp_path / "csv"), fmt="csv", classes=CLASSES,
                                      loads=(0, 3), n_samples=N, channels=("DE",))
    with open(os.path.join(csv_dir, "12k_Drive_End_IR007_0_105.csv")) as f:
        assert f.readline().strip() == "DE"
    config = dataclasses.replace(CONFIG, format="csv", channels=("DE",))
    recs = data.load_recordings(csv_dir, config)
    assert len(recs) == 6 and {r.load for r in recs} == {0, 3}
    assert all(r.signal.shape == (N, 1) and r.signal.dtype == np.float32 for r in recs)
    assert {r.rpm for r in recs if r.load == 3} == {1730}
    # Same seed -> the same drive-end signal whichever format or channels were asked for.
    mat_recs = {(r.label, r.load): r for r in data.load_recordings(mat_dir, CONFIG)}
    for r in recs:
        if r.load == 0:
            np.testing.assert_allclose(r.signal[:, 0], mat_recs[r.label, 0].signal[:, 0],
                                       rtol=1e-6, atol=1e-7)


def test_two_recordings_in_one_mat_file(tmp_path):
    rng = np.random.default_rng(0)
    x98, x99 = rng.normal(size=(3000, 1)), rng.normal(size=(2900, 1)) + 5
    scipy.io.savemat(tmp_path / "normal_98_99.mat", {
        "X098_DE_time": x98, "X098_FE_time": x98 * 0.5, "X098RPM": np.array([[1772]]),
        "X099_DE_time": x99, "X099_FE_time": x99[:2800] * 0.5,
        "X099RPM": np.array([[1750]])})
    path = str(tmp_path / "normal_98_99.mat")
    sig = data.read_mat_signal(path, ["DE", "FE"], file_number="99")
    assert sig.shape == (2800, 2)  # truncated to the shorter FE channel
    np.testing.assert_allclose(sig[:, 0], x99[:2800, 0].astype(np.float32))
    np.testing.assert_allclose(sig[:, 1], 0.5 * x99[:2800, 0].astype(np.float32), rtol=1e-6)
    with pytest.raises(DataError, match="X098_DE_time.*X099_DE_time") as e:
        data.read_mat_signal(path, ["DE"])
    assert str(e.value).startswith(path)

    # Through the manifest: the cwru_file_number column picks the recording.
    _write_single_manifest(tmp_path, "normal_98_99.mat", number="99")
    (rec,) = data.load_recordings(str(tmp_path), dataclasses.replace(CONFIG, channels=("DE",)))
    np.testing.assert_allclose(rec.signal[:, 0], x99[:, 0].astype(np.float32))


def test_file_number_is_zero_padded(tmp_path):
    scipy.io.savemat(tmp_path / "n.mat", {"X097_DE_time": np.ones((300, 1))})
    assert data.read_mat_signal(str(tmp_path / "n.mat"), ["DE"], "97").shape == (300, 1)


# ------------------------------------------------------------------ splits


def test_block_split_keeps_windows_inside_blocks(mat_dir):
    rec = data.load_recordings(mat_dir, CONFIG)[0]
    splits = data.split_windows(rec, CONFIG)
    assert len(splits["train"]) == 21 and len(splits["eval"]) == 7
    assert min(splits["eval"]) >= 3 * N // 4  # the last block is eval
    for s in splits["train"] + splits["eval"]:
        assert s // 1024 == (s + CONFIG.window - 1) // 1024  # never crosses a block
    assert not _overlaps(splits["train"], splits["eval"], CONFIG.window)


def test_holdout_split_and_max_windows(mat_dir):
    recs = data.load_recordings(mat_dir, CONFIG)
    config = dataclasses.replace(CONFIG, holdout_load=1)
    for r in recs:
        s = data.split_windows(r, config)
        held, kept = ("eval", "train") if r.load == 1 else ("train", "eval")
        assert len(s[held]) == 28 and s[kept] == []
    capped = data.split_windows(recs[0], dataclasses.replace(CONFIG, max_windows_per_file=3))
    full = data.split_windows(recs[0], CONFIG)
    assert capped["train"] == [full["train"][0], full["train"][10], full["train"][20]]
    assert capped["eval"] == [full["eval"][0], full["eval"][3], full["eval"][6]]


def test_split_errors(mat_dir):
    recs = data.load_recordings(mat_dir, CONFIG)
    with pytest.raises(DataError, match="block of 585 samples.*fewer split_blocks") as e:
        data.split_windows(recs[0], dataclasses.replace(CONFIG, split_blocks=7, window=600))
    assert str(e.value).startswith(recs[0].path)
    with pytest.raises(DataError, match="holdout_load=3 is not present"):
        data.window_examples(recs, dataclasses.replace(CONFIG, holdout_load=3))
    with pytest.raises(DataError, match="train split is empty"):
        data.window_examples(recs, dataclasses.replace(CONFIG, split_blocks=1))
    only_load_0 = [r for r in recs if r.load == 0]
    with pytest.raises(DataError, match="train split is empty"):
        data.window_examples(only_load_0, dataclasses.replace(CONFIG, holdout_load=0))


# ------------------------------------------------------------------ ingest


def _check_no_leakage(examples_dir: str, window: int) -> dict[str, list]:
    parsed = {s: _read_examples(os.path.join(examples_dir, s, "data.tfrecord"))
              for s in SPLITS}
    starts: dict[str, dict[str, list[int]]] = {}
    for split, examples in parsed.items():
        for ex in examples:
            f = ex.features.feature
            src = f["source_file"].bytes_list.value[0].decode()
            starts.setdefault(src, {"train": [], "eval": []})[split].append(
                f["window_start"].int64_list.value[0])
    for src, by_split in starts.items():
        assert not _overlaps(by_split["train"], by_split["eval"], window), src
    return parsed


def test_ingest_writes_exact_features(tmp_path, mat_dir):
    messages: list[str] = []
    result = data.ingest(mat_dir, CONFIG, str(tmp_path / "out"), progress=messages.append)
    assert result.examples_dir == str(tmp_path / "out" / result.fingerprint)
    assert len(result.fingerprint) == 16
    assert result.counts == {"train": 9 * 21, "eval": 9 * 7}
    assert result.summary["class_counts"]["eval"] == {c: 21 for c in CLASSES}
    assert "read 9/9 recordings" in messages and any("wrote" in m for m in messages)
    assert os.path.isfile(os.path.join(result.examples_dir, "_SUCCESS"))

    parsed = _check_no_leakage(result.examples_dir, CONFIG.window)
    recs = {os.path.basename(r.path): r for r in data.load_recordings(mat_dir, CONFIG)}
    for split, examples in parsed.items():
        assert len(examples) == result.counts[split]
        for ex in examples:
            f = ex.features.feature
            assert set(f) == FEATURES
            assert {k: f[k].WhichOneof("kind") for k in f} == {
                "signal": "float_list", "label": "int64_list", "label_name": "bytes_list",
                "load": "int64_list", "rpm": "int64_list", "source_file": "bytes_list",
                "window_start": "int64_list"}
            rec = recs[f["source_file"].bytes_list.value[0].decode()]
            start = f["window_start"].int64_list.value[0]
            # Time-major, channels interleaved: row-major [window, n_channels].
            np.testing.assert_array_equal(
                np.array(f["signal"].float_list.value, np.float32),
                rec.signal[start:start + CONFIG.window].reshape(-1))
            assert f["label"].int64_list.value == [rec.label_id]
            assert f["label_name"].bytes_list.value == [rec.label.encode()]
            assert f["load"].int64_list.value == [rec.load]
            assert f["rpm"].int64_list.value == [rec.rpm]
    train_labels = [ex.features.feature["label"].int64_list.value[0] for ex in parsed["train"]]
    assert train_labels != sorted(train_labels)  # shuffled so batches mix classes


def test_ingest_with_holdout_load(tmp_path, mat_dir):
    config = dataclasses.replace(CONFIG, holdout_load=2)
    result = data.ingest(mat_dir, config, str(tmp_path / "out"))
    assert result.counts == {"train": 6 * 28, "eval": 3 * 28}
    parsed = _check_no_leakage(result.examples_dir, config.window)
    loads = {s: {ex.features.feature["load"].int64_list.value[0] for ex in parsed[s]}
             for s in SPLITS}
    assert loads == {"train": {0, 1}, "eval": {2}}


def test_reingest_reuses_folder_and_copies_keep_fingerprint(tmp_path, mat_dir):
    out = tmp_path / "out"
    first = data.ingest(mat_dir, CONFIG, str(out))
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    messages: list[str] = []
    again = data.ingest(mat_dir, CONFIG, str(out), progress=messages.append)
    assert again == first
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == mtimes
    assert any("up to date" in m for m in messages)
    # A copy elsewhere (new paths and mtimes, same bytes) maps to the same folder.
    copy = _copy(mat_dir, tmp_path / "copy")
    assert data.ingest(copy, CONFIG, str(out)) == first
    assert os.listdir(out) == [first.fingerprint]


def test_changed_config_or_data_gives_new_fingerprint(tmp_path, mat_dir):
    out = str(tmp_path / "out")
    base = data.ingest(mat_dir, CONFIG, out)
    other = data.ingest(mat_dir, dataclasses.replace(CONFIG, stride=256), out)
    assert other.fingerprint != base.fingerprint
    assert other.counts["eval"] < base.counts["eval"]
    changed = _copy(mat_dir, tmp_path / "changed")
    data.generate_synthetic(str(tmp_path / "seed1"), classes=("IR007",), loads=(0,),
                            n_samples=N, seed=1)
    shutil.copy(tmp_path / "seed1" / "12k_Drive_End_IR007_0_105.mat", changed)
    assert data.ingest(changed, CONFIG, out).fingerprint not in (base.fingerprint,
                                                                   other.fingerprint)
    assert len(os.listdir(out)) == 3  # three complete folders, no temporary leftovers
    with open(os.path.join(base.examples_dir, "summary.json")) as f:
        assert json.load(f)["counts"] == base.counts


def test_failed_ingest_leaves_nothing(tmp_path, mat_dir, monkeypatch):
    bad = _copy(mat_dir, tmp_path / "bad")
    _edit_manifest(bad, lambda h, rows: (h, rows + [["gone.mat", *rows[0][1:]]]))
    out = tmp_path / "out"
    with pytest.raises(DataError, match="gone.mat"):
        data.ingest(bad, CONFIG, str(out))
    assert not out.exists() or list(out.iterdir()) == []

    # A failure while writing removes the temporary folder too.
    calls = {"n": 0}
    real = data._serialize

    def failing(*args):
        calls["n"] += 1
        if calls["n"] > 50:
            raise OSError("disk full")
        return real(*args)

    monkeypatch.setattr(data, "_serialize", failing)
    with pytest.raises(OSError, match="disk full"):
        data.ingest(mat_dir, CONFIG, str(out))
    assert list(out.iterdir()) == []


# ------------------------------------------------------------------ bad inputs


def test_mat_without_channel_key(tmp_path):
    scipy.io.savemat(tmp_path / "fe_only.mat", {"X100_FE_time": np.zeros((5000, 1))})
    _write_single_manifest(tmp_path, "fe_only.mat")
    with pytest.raises(DataError) as e:
        data.load_recordings(str(tmp_path), CONFIG)
    msg = str(e.value)
    assert msg.startswith(str(tmp_path / "fe_only.mat"))
    assert "no drive-end (DE) channel" in msg and "X<nnn>_DE_time" in msg
    assert "X100_FE_time" in msg


def test_corrupt_mat_and_nan_signal(tmp_path):
    (tmp_path / "junk.mat").write_bytes(b"not a mat file" * 20)
    with pytest.raises(DataError, match="junk.mat"):
        data.read_mat_signal(str(tmp_path / "junk.mat"), ["DE"])
    x = np.ones((500, 1))
    x[123] = np.nan
    scipy.io.savemat(tmp_path / "nan.mat", {"X097_DE_time": x})
    with pytest.raises(DataError, match="nan.mat.*NaN/inf.*sample 123"):
        data.read_mat_signal(str(tmp_path / "nan.mat"), ["DE"])


def test_signal_shorter_than_window(tmp_path):
    short = data.generate_synthetic(str(tmp_path / "short"), classes=("Normal",), loads=(0,),
                                    n_samples=200)
    with pytest.raises(DataError) as e:
        data.load_recordings(short, CONFIG)
    msg = str(e.value)
    assert "normal_0_97.mat" in msg and "200 samples" in msg and "256" in msg


def test_csv_non_numeric_cell_and_missing_column(tmp_path):
    d = data.generate_synthetic(str(tmp_path / "csv"), fmt="csv", classes=("Normal",),
                                loads=(0,), n_samples=1000)
    path = os.path.join(d, "normal_0_97.csv")
    lines = Path(path).read_text().splitlines()
    lines[6] = lines[6].split(",")[0] + ",abc"  # line 7 of the file, FE column
    Path(path).write_text("\n".join(lines) + "\n")
    config = dataclasses.replace(CONFIG, format="csv")
    with pytest.raises(DataError) as e:
        data.load_recordings(d, config)
    msg = str(e.value)
    assert msg.startswith(path) and "line 7" in msg and "'FE'" in msg and "'abc'" in msg

    with pytest.raises(DataError, match="normal_0_97.csv.*'BA'"):
        data.read_csv_signal(path, ["DE", "BA"])


def test_csv_extra_columns_are_ignored(tmp_path):
    path = tmp_path / "rec.csv"
    path.write_text("time,FE,DE\n0.0,1.5,-2\n0.1,2.5,3e-1\n\n")
    sig = data.read_csv_signal(str(path), ["DE", "FE"])
    np.testing.assert_array_equal(sig, np.array([[-2, 1.5], [0.3, 2.5]], np.float32))


def test_manifest_errors(tmp_path, mat_dir):
    def expect(edit, *parts):
        d = _copy(mat_dir, tmp_path / f"case{len(list(tmp_path.iterdir()))}")
        manifest = _edit_manifest(d, edit)
        with pytest.raises(DataError) as e:
            data.load_recordings(d, CONFIG)
        assert str(e.value).startswith(manifest)
        for part in parts:
            assert part in str(e.value)

    def replace_cell(column, value, row=1):
        def edit(header, rows):
            rows[row][header.index(column)] = value
            return header, rows
        return edit

    expect(replace_cell("file", "missing.mat"), "line 3", "missing.mat")
    expect(replace_cell("class10", "IR099"), "line 3", "'IR099'", "'OR014'")
    expect(replace_cell("load_hp", "heavy"), "line 3", "'load_hp'", "'heavy'")

    def drop_rpm(header, rows):
        i = header.index("rpm")
        return header[:i] + header[i + 1:], [r[:i] + r[i + 1:] for r in rows]

    expect(drop_rpm, "missing required column", "'rpm'")


def test_bad_config_is_rejected(mat_dir):
    with pytest.raises(DataError, match="format"):
        data.load_recordings(mat_dir, dataclasses.replace(CONFIG, format="wav"))
