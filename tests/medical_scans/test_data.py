"""Ingestion of the medical-scans app: every format round-trips through TFRecords, patient
grouping, the DICOM conversion, fingerprinted folders, and each kind of bad input."""

from __future__ import annotations

import io
import math
import os
import shutil
import warnings

import numpy as np
import pytest
from PIL import Image

from tests import harness
from apps.medical_scans import data
from apps.medical_scans.config import DataConfig
from apps.medical_scans.data import DataError
from apps.medical_scans.features import IMAGE, LABEL, PATIENT, SOURCE, SPLITS, SUBTYPE
from suite import examples_io

N = 12  # images per class
SIZE = 16


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> str:
    return data.generate_synthetic(str(tmp_path_factory.mktemp("xray") / "chest"),
                                   n_per_class=N, size=SIZE)


def _read(folder: str, split: str) -> list[dict]:
    """The examples of a split, images decoded as tf.io.decode_image would for a model."""
    import tensorflow as tf  # noqa: PLC0415

    spec = {IMAGE: tf.io.FixedLenFeature([], tf.string),
            LABEL: tf.io.FixedLenFeature([], tf.int64)}
    spec.update({k: tf.io.FixedLenFeature([], tf.string)
                 for k in (SUBTYPE, PATIENT, SOURCE)})
    out = []
    for raw in tf.data.TFRecordDataset(os.path.join(folder, split, examples_io.DATA_FILE)):
        ex = tf.io.parse_single_example(raw, spec)
        out.append({"pixels": tf.io.decode_image(ex[IMAGE], channels=1).numpy()[:, :, 0],
                    "label": int(ex[LABEL]),
                    **{short: ex[k].numpy().decode() for short, k in (
                        ("subtype", SUBTYPE), ("patient", PATIENT),
                        ("source", SOURCE))}})
    return out


def _read_all(folder: str) -> dict[str, list[dict]]:
    return {split: _read(folder, split) for split in SPLITS}


def _pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path))


# ------------------------------------------------------------------ formats


def test_folders_round_trip_and_patient_grouping(folders, tmp_path):
    config = DataConfig(eval_fraction=0.25, validation_fraction=0.2)
    result = data.ingest(folders, config, str(tmp_path / "out"))
    examples = _read_all(result.examples_dir)
    every = [e for split in SPLITS for e in examples[split]]
    assert len(every) == 2 * N and result.skipped == []
    assert len({e["source"] for e in every}) == 2 * N
    for e in every:
        folder, name = e["source"].split("/")
        assert e["label"] == config.classes.index(folder)
        np.testing.assert_array_equal(e["pixels"], _pixels(os.path.join(folders, e["source"])))
        if folder == "PNEUMONIA":
            assert e["patient"] == name.split("_")[0]
            assert e["subtype"] == name.split("_")[1] and e["subtype"] in ("bacteria", "virus")
        else:  # IM-<patient>-<image>.png
            assert e["patient"] == name.rsplit("-", 1)[0] and e["subtype"] == "none"
    # No patient in two splits; the eval share of each class reaches the fraction and
    # overshoots it by less than one patient (at most 3 images).
    patients = {s: {e["patient"] for e in examples[s]} for s in SPLITS}
    assert not patients["train"] & patients["validation"]
    assert not patients["eval"] & (patients["train"] | patients["validation"])
    for label, target in ((0, 0.25 * N), (1, 0.25 * N)):
        held = sum(e["label"] == label for e in examples["eval"])
        assert target <= held < target + 3, (label, held)
    assert sum(e["label"] == 0 for e in examples["eval"]) == math.ceil(0.25 * N)
    summary = result.summary
    assert summary["counts"] == {s: len(examples[s]) for s in SPLITS}
    assert summary["patients"] == {s: len(patients[s]) for s in SPLITS}
    assert summary["class_counts"]["eval"]["NORMAL"] == math.ceil(0.25 * N)
    assert summary["eval_source"] == "carved" and summary["patients_in_train_and_eval"] == 0
    assert sum(summary["subtypes"]["train"].values()) == len(examples["train"])
    # Examples are shuffled: the classes interleave within a split.
    labels = [e["label"] for e in examples["train"]]
    assert labels != sorted(labels)


def test_same_inputs_give_the_same_untouched_folder(folders, tmp_path):
    config = DataConfig()
    out = str(tmp_path / "out")
    first = data.ingest(folders, config, out)
    record = os.path.join(first.examples_dir, "train", examples_io.DATA_FILE)
    written = os.stat(record).st_mtime_ns
    lines: list[str] = []
    again = data.ingest(folders, config, out, progress=lines.append)
    assert again.examples_dir == first.examples_dir and again.summary == first.summary
    assert os.stat(record).st_mtime_ns == written
    assert any("up to date" in line for line in lines)
    # The fingerprint is over contents and relative names: a copy maps to the same folder.
    copy = shutil.copytree(folders, str(tmp_path / "copy"))
    assert data.ingest(copy, config, out).examples_dir == first.examples_dir
    other = data.ingest(folders, DataConfig(split_seed=1), out)
    assert other.examples_dir != first.examples_dir
    assert sorted(os.listdir(out)) == sorted({os.path.basename(first.examples_dir),
                                              os.path.basename(other.examples_dir)})


def test_train_and_test_folders(tmp_path):
    root = tmp_path / "chest_xray"
    data.generate_synthetic(str(root / "train"), n_per_class=6, size=8, seed=1)
    data.generate_synthetic(str(root / "test"), n_per_class=3, size=8, seed=2)
    data.generate_synthetic(str(root / "val"), n_per_class=2, size=8, seed=3)
    (root / "train" / "OTHER").mkdir()
    (root / "train" / "NORMAL" / ".DS_Store").write_bytes(b"\0junk")
    (root / "train" / "NORMAL" / "Thumbs.db").write_bytes(b"\0junk")
    result = data.ingest(str(root), DataConfig(validation_fraction=0.3), str(tmp_path / "out"))
    examples = _read_all(result.examples_dir)
    assert len(examples["eval"]) == 6
    assert all(e["source"].startswith("test/") for e in examples["eval"])
    training = examples["train"] + examples["validation"]
    assert len(training) == 12 and examples["validation"]
    assert all(e["source"].startswith("train/") for e in training)
    train_patients = {e["patient"] for e in examples["train"]}
    assert not train_patients & {e["patient"] for e in examples["validation"]}
    summary = result.summary
    assert summary["eval_source"] == "test/" and summary["layout"] == "train+test"
    assert set(summary["ignored_folders"]) == {"val", "train/OTHER"}
    assert result.skipped == []


def test_dicom_round_trip_matches_the_png_pixels(tmp_path):
    pngs = data.generate_synthetic(str(tmp_path / "png"), n_per_class=4, size=12, seed=5)
    dicoms = data.generate_synthetic(str(tmp_path / "dcm"), "dicom", n_per_class=4, size=12,
                                     seed=5)
    result = data.ingest(dicoms, DataConfig(format="dicom"), str(tmp_path / "out"))
    every = [e for split in _read_all(result.examples_dir).values() for e in split]
    assert len(every) == 8 and result.summary["format"] == "dicom"
    for e in every:
        assert e["source"].endswith(".dcm")
        png = os.path.join(pngs, e["source"][:-4] + ".png")
        np.testing.assert_array_equal(e["pixels"], _pixels(png))  # slope, intercept, window
        name = os.path.basename(e["source"])
        # Pneumonia patients from the file name; the rest from the DICOM PatientID.
        assert e["patient"] == (name.split("_")[0] if name.startswith("person")
                                else name[:len("IM-0001")])


def test_npz_round_trip(tmp_path):
    path = data.generate_synthetic(str(tmp_path / "pneumonia.npz"), "npz", n_per_class=6,
                                   size=10)
    arrays = np.load(path)
    assert arrays["train_labels"].shape == (12, 1) and arrays["val_images"].shape == (4, 10, 10)
    result = data.ingest(path, DataConfig(format="npz", validation_fraction=0.25),
                         str(tmp_path / "out"))
    examples = _read_all(result.examples_dir)
    assert len(examples["eval"]) == 4 and len(examples["validation"]) == 4
    assert len(examples["train"]) == 8
    for split, items in examples.items():
        for e in items:
            name, rest = e["source"].split(":")
            part, index = rest[:-1].split("[")
            assert name == "pneumonia.npz" and part == ("val" if split == "eval" else "train")
            assert e["patient"] == f"{part}-{index}" and e["subtype"] == "none"
            assert e["label"] == int(arrays[f"{part}_labels"][int(index), 0])
            np.testing.assert_array_equal(e["pixels"], arrays[f"{part}_images"][int(index)])
    assert result.summary["class_counts"]["validation"] == {"NORMAL": 2, "PNEUMONIA": 2}


# ------------------------------------------------------------------ single images


def test_dicom_conversion_rescales_windows_and_inverts(tmp_path):
    stored = np.array([[0, 100], [200, 300]], np.uint16)  # real values -100, 100, 300, 500
    path = str(tmp_path / "a.dcm")
    data._write_dicom(path, stored, slope=2, intercept=-100, window=(200, 400))
    windowed = [[0, 64], [191, 255]]  # window [0, 400]
    np.testing.assert_array_equal(data.dicom_to_uint8(path), windowed)
    data._write_dicom(path, stored, slope=2, intercept=-100, window=([200, 50], [400, 10]))
    np.testing.assert_array_equal(data.dicom_to_uint8(path), windowed)  # the first window
    data._write_dicom(path, stored, photometric="MONOCHROME1", slope=2, intercept=-100,
                      window=(200, 400))
    np.testing.assert_array_equal(data.dicom_to_uint8(path), 255 - np.array(windowed))
    data._write_dicom(path, stored, slope=2, intercept=-100)  # no window: min-max
    np.testing.assert_array_equal(data.dicom_to_uint8(path), [[0, 85], [170, 255]])
    windowed_by_config = DataConfig(dicom_default_window=(100, 400))
    np.testing.assert_array_equal(data.dicom_to_uint8(path, windowed_by_config),
                                  [[0, 128], [255, 255]])
    data._write_dicom(path, np.stack([stored, stored[::-1]]), frames=2)  # first frame
    np.testing.assert_array_equal(data.dicom_to_uint8(path), [[0, 85], [170, 255]])
    # Any file with the DICM preamble is DICOM, and becomes an 8-bit grayscale PNG.
    bare = str(tmp_path / "IM0001")
    data._write_dicom(bare, stored, slope=2, intercept=-100, window=(200, 400))
    png = data.load_image_bytes(bare, DataConfig(format="dicom"))
    assert png.startswith(b"\x89PNG")
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), windowed)
    data._write_dicom(path, stored, photometric="RGB")
    with pytest.raises(DataError, match=r"a\.dcm: .*PhotometricInterpretation 'RGB'"):
        data.dicom_to_uint8(path)


def test_dicom_of_another_modality_or_view_is_refused_by_its_tags(tmp_path):
    from pydicom.data import get_testdata_file

    stored = np.array([[0, 100], [200, 300]], np.uint16)
    for modality in ("CT", "MR"):
        path = str(tmp_path / f"{modality}.dcm")
        data._write_dicom(path, stored, modality=modality)
        with pytest.raises(DataError, match=rf"{modality}\.dcm: not a radiograph: modality "
                                            rf"'{modality}' \(Modality tag\); the model takes "
                                            "CR or DX only"):
            data.load_image_bytes(path, DataConfig())
        # Accepted when the config says so.
        assert data.load_image_bytes(path, DataConfig(dicom_modalities=(modality,)))
    # The CT slice and brain MR shipped with pydicom, as a user sent them.
    for name in ("CT_small.dcm", "MR_small.dcm"):
        with pytest.raises(DataError, match="not a radiograph"):
            data.load_image_bytes(get_testdata_file(name), DataConfig())
    lateral = str(tmp_path / "lateral.dcm")
    data._write_dicom(lateral, stored, modality="CR", view="LL")
    frontal = DataConfig(dicom_views=("PA", "AP"))
    with pytest.raises(DataError, match=r"lateral\.dcm: a view the model was not trained "
                                        r"for: 'LL' \(ViewPosition tag\); the model takes PA "
                                        "or AP only"):
        data.load_image_bytes(lateral, frontal)
    assert data.load_image_bytes(lateral, DataConfig())  # any view by default
    data._write_dicom(lateral, stored, modality="CR", view="PA")
    assert data.load_image_bytes(lateral, frontal)
    # Ingestion refuses the file the same way, naming it.
    folders = tmp_path / "scans"
    for label in ("NORMAL", "PNEUMONIA"):
        for i in range(3):
            (folders / label).mkdir(parents=True, exist_ok=True)
            data._write_dicom(str(folders / label / f"person{i}{label}_{i}.dcm"), stored,
                              patient_id=f"{label}{i}")
    data._write_dicom(str(folders / "NORMAL" / "head.dcm"), stored, modality="CT")
    with pytest.raises(DataError, match=r"head\.dcm: not a radiograph: modality 'CT'"):
        data.ingest(str(folders), DataConfig(format="dicom"), str(tmp_path / "out"))


def test_load_image_bytes_keeps_jpeg_and_png_bytes(tmp_path):
    config = DataConfig()
    gray = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 4)
    cases = {"g.jpeg": harness.encode_image(gray, "JPEG"),
             "rgb.png": data.encode_png(np.stack([gray] * 3, -1))}
    deep = io.BytesIO()
    Image.fromarray(gray.astype(np.uint16) * 256).save(deep, format="PNG")  # 16-bit
    cases["deep.png"] = deep.getvalue()
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        assert data.load_image_bytes(str(tmp_path / name), config) == content
    gif = io.BytesIO()
    Image.fromarray(gray).save(gif, format="GIF")
    (tmp_path / "x.png").write_bytes(gif.getvalue())
    with pytest.raises(DataError, match="x.png: GIF image; expected a JPEG, PNG or DICOM"):
        data.load_image_bytes(str(tmp_path / "x.png"), config)
    serving = data.image_example(cases["g.jpeg"])
    import tensorflow as tf  # noqa: PLC0415

    parsed = tf.train.Example.FromString(serving)
    assert list(parsed.features.feature) == [IMAGE]


# ------------------------------------------------------------------ bad inputs


def _base(tmp_path, fmt: str = "folders") -> str:
    return data.generate_synthetic(str(tmp_path / ("data.npz" if fmt == "npz" else "data")),
                                   fmt, n_per_class=3, size=8)


def _corrupt_jpeg(tmp_path) -> tuple[str, str]:
    root = _base(tmp_path)
    good = harness.encode_image(np.full((16, 16), 99, np.uint8), "JPEG")
    (tmp_path / "data" / "NORMAL" / "bad.jpeg").write_bytes(good[:20] + b"\0" * 40 + good[60:])
    return root, "NORMAL/bad.jpeg"


def _truncated_jpeg(tmp_path) -> tuple[str, str]:
    root = _base(tmp_path)
    good = harness.encode_image(np.full((16, 16), 99, np.uint8), "JPEG")
    (tmp_path / "data" / "PNEUMONIA" / "half.jpg").write_bytes(good[:len(good) // 2])
    return root, "PNEUMONIA/half.jpg"


def _non_image(tmp_path) -> tuple[str, str]:
    root = _base(tmp_path)
    (tmp_path / "data" / "PNEUMONIA" / "notes.txt").write_text("not an image")
    return root, "PNEUMONIA/notes.txt"


def _text_named_png(tmp_path) -> tuple[str, str]:
    root = _base(tmp_path)
    (tmp_path / "data" / "NORMAL" / "readme.png").write_text("not an image")
    return root, "NORMAL/readme.png"


def _empty_class(tmp_path) -> tuple[str, str]:
    root = _base(tmp_path)
    shutil.rmtree(tmp_path / "data" / "PNEUMONIA")
    (tmp_path / "data" / "PNEUMONIA").mkdir()
    return root, "PNEUMONIA: empty class folder (expected JPEG or PNG images)"


def _missing_class(tmp_path) -> tuple[str, str]:
    root = _base(tmp_path)
    shutil.rmtree(tmp_path / "data" / "PNEUMONIA")
    return root, "PNEUMONIA: missing class folder"


def _dicom_without_pixels(tmp_path) -> tuple[str, str]:
    root = _base(tmp_path, "dicom")
    data._write_dicom(str(tmp_path / "data" / "NORMAL" / "blank.dcm"), None)
    return root, "NORMAL/blank.dcm: DICOM file has no pixel data"


def _npz(tmp_path, **arrays) -> tuple[str, str]:
    path = str(tmp_path / "bad.npz")
    base = {"train_images": np.zeros((4, 8, 8), np.uint8),
            "train_labels": np.array([[0], [1], [0], [1]], np.uint8),
            "val_images": np.zeros((2, 8, 8), np.uint8), "val_labels": np.array([0, 1])}
    base.update(arrays)
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return path, "bad.npz: "


BAD_INPUTS = {
    "corrupt jpeg": (_corrupt_jpeg, "folders"),
    "truncated jpeg": (_truncated_jpeg, "folders"),
    "non-image file": (_non_image, "folders"),
    "text named .png": (_text_named_png, "folders"),
    "empty class folder": (_empty_class, "folders"),
    "missing class folder": (_missing_class, "folders"),
    "dicom without pixels": (_dicom_without_pixels, "dicom"),
    "npz missing key": (lambda t: _npz(t, train_labels=None), "npz"),
    "npz half eval pair": (lambda t: _npz(t, val_labels=None), "npz"),
    "npz count mismatch": (lambda t: _npz(t, train_labels=np.array([0, 1, 0])), "npz"),
    "npz label 2": (lambda t: _npz(t, train_labels=np.array([0, 1, 2, 1])), "npz"),
}
MESSAGES = {
    "npz missing key": "missing array 'train_labels'.*found \\['train_images'",
    "npz half eval pair": "missing array 'val_labels'",
    "npz count mismatch": "4 images but train_labels holds 3 labels",
    "npz label 2": "values \\[0, 1, 2\\]",
    "missing class folder": "found folders \\['NORMAL'\\]",
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_each_bad_input_raises_naming_the_file(tmp_path, case):
    make, fmt = BAD_INPUTS[case]
    root, where = make(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(DataError) as raised:
        data.ingest(root, DataConfig(format=fmt), str(out))
    message = str(raised.value)
    named = root if fmt == "npz" else os.path.join(root, where)
    assert message.startswith(named), message
    if case in MESSAGES:
        assert raised.match(MESSAGES[case])
    assert not out.exists() or not os.listdir(out)


def test_a_class_missing_from_a_split_stops_ingestion_unless_allowed(tmp_path):
    root = _base(tmp_path)  # three images a class: none can be held out for eval
    with pytest.raises(ValueError, match=r"no eval examples of class\(es\) \['PNEUMONIA'\]"):
        data.ingest(root, DataConfig(), str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out") or os.listdir(tmp_path / "out") == []
    lines: list[str] = []
    result = data.ingest(root, DataConfig(allow_missing_classes=True), str(tmp_path / "out"),
                         progress=lines.append)
    assert result.summary["class_counts"]["eval"]["PNEUMONIA"] == 0
    assert any("allowed by data.allow_missing_classes" in line for line in lines)


def test_a_failure_while_writing_leaves_nothing(tmp_path, monkeypatch):
    root = _base(tmp_path)
    calls = []
    real = data.image_example

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(data, "image_example", failing)
    with pytest.raises(OSError, match="disk full"):
        # Three images a class: too few to hold one out for eval, which this test allows.
        data.ingest(root, DataConfig(allow_missing_classes=True), str(tmp_path / "out"))
    assert os.listdir(tmp_path / "out") == []


def test_skip_bad_files_skips_and_records_them(tmp_path):
    root, bad = _corrupt_jpeg(tmp_path)
    (tmp_path / "data" / "NORMAL" / ".hidden.png").write_text("ignored")
    lines: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = data.ingest(root, DataConfig(skip_bad_files=True, allow_missing_classes=True),
                             str(tmp_path / "out"),
                             progress=lines.append)
    # One progress line per skipped file, no raw Python warning beside it.
    assert [str(w.message) for w in caught if "bad.jpeg" in str(w.message)] == []
    assert [f for f, _ in result.skipped] == [bad]
    assert "cannot decode" in result.skipped[0][1]
    assert result.summary["skipped"] == [list(s) for s in result.skipped]
    assert sum(result.summary["counts"].values()) == 6
    assert any(bad in line for line in lines)
