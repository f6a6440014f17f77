"""Ingestion of the defect-images app: both layouts round-trip through TFRecords with their
classes, splits and VOC boxes; fingerprinted folders; and each kind of bad input, stopped
with the file named (nothing written) or skipped and counted with skip_bad_files."""

from __future__ import annotations

import dataclasses
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from apps.defect_images import data
from apps.defect_images.app import APP
from apps.defect_images.config import DataConfig, DefectConfig, with_mode
from apps.defect_images.features import (
    BOX_FRACTION, BOXES, CLASS_NAME, DEFECT_SIZE, IMAGE, IS_DEFECT, LABEL, SOURCE, SPLITS)
from suite import examples_io
from tests import harness

TINY = DefectConfig.preset("tiny")
N = 10  # images per class


def _config(mode: str = "classify", **data_fields) -> DefectConfig:
    config = with_mode(TINY, mode)
    return dataclasses.replace(config, data=dataclasses.replace(config.data, **data_fields))


def _read(folder: str, split: str) -> list[dict]:
    """The examples of a split, with the image bytes and their decoded gray pixels."""
    import tensorflow as tf  # noqa: PLC0415

    spec = {IMAGE: tf.io.FixedLenFeature([], tf.string),
            LABEL: tf.io.FixedLenFeature([], tf.int64),
            IS_DEFECT: tf.io.FixedLenFeature([], tf.int64),
            BOX_FRACTION: tf.io.FixedLenFeature([], tf.float32),
            BOXES: tf.io.VarLenFeature(tf.float32)}
    spec.update({k: tf.io.FixedLenFeature([], tf.string)
                 for k in (CLASS_NAME, SOURCE, DEFECT_SIZE)})
    out = []
    for raw in tf.data.TFRecordDataset(os.path.join(folder, split, examples_io.DATA_FILE)):
        ex = tf.io.parse_single_example(raw, spec)
        out.append({"bytes": ex[IMAGE].numpy(), "label": int(ex[LABEL]),
                    "is_defect": int(ex[IS_DEFECT]), "class": ex[CLASS_NAME].numpy().decode(),
                    "source": ex[SOURCE].numpy().decode(),
                    "size": ex[DEFECT_SIZE].numpy().decode(),
                    "fraction": float(ex[BOX_FRACTION]),
                    "boxes": tf.sparse.to_dense(ex[BOXES]).numpy().tolist()})
    return out


def _read_all(folder: str) -> dict[str, list[dict]]:
    return {split: _read(folder, split) for split in SPLITS}


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> str:
    """Class folders of PNG, JPEG and BMP files (grayscale), VOC boxes for the defects."""
    return data.generate_synthetic(str(tmp_path_factory.mktemp("surfaces") / "parts"),
                                   n_per_class=N, size=32,
                                   extensions=(".png", ".jpg", ".bmp"))


@pytest.fixture(scope="module")
def prefixed(tmp_path_factory) -> str:
    """A NEU-style flat folder (RGB, <class>_<number>.png) beside its annotations/."""
    return data.generate_synthetic(str(tmp_path_factory.mktemp("neu") / "neu"), "prefix",
                                   classes=("crazing", "rolled-in_scale", "spot"),
                                   n_per_class=N, size=32, rgb=True)


# ------------------------------------------------------------------ layouts


def test_class_folders_round_trip_with_boxes_and_stratified_splits(folders, tmp_path):
    result = APP.ingest(folders, _config(eval_fraction=0.2, validation_fraction=0.25),
                        str(tmp_path / "out"), None)
    examples = _read_all(result.examples_dir)
    every = [e for split in SPLITS for e in examples[split]]
    assert len(every) == 3 * N and result.skipped == []
    assert result.summary["classes"] == ["ok", "scratch", "spot"]
    assert result.summary["good_classes"] == ["ok"]
    formats = result.summary["image_formats"]
    assert set(formats) == {"BMP", "JPEG", "PNG"} and sum(formats.values()) == 3 * N
    for e in every:
        folder, name = e["source"].split("/")
        assert e["class"] == folder and e["label"] == ["ok", "scratch", "spot"].index(folder)
        assert e["is_defect"] == int(folder != "ok")
        with open(os.path.join(folders, e["source"]), "rb") as f:
            assert f.read() == e["bytes"]  # the encoded file itself, never decoded pixels
        if folder == "ok":
            assert e["boxes"] == [] and e["size"] == "unannotated" and e["fraction"] == 0.0
        else:  # the generator's box around the drawn defect
            assert len(e["boxes"]) == 4 and 0.0 < e["fraction"] < 0.5
            assert e["size"] in ("small", "medium")
    # Stratified: 2 of 10 of each class in eval, 2 of the other 8 in validation.
    for split, share in (("eval", 2), ("validation", 2), ("train", 6)):
        classes = [e["class"] for e in examples[split]]
        assert all(classes.count(c) == share for c in ("ok", "scratch", "spot")), split
    counts = result.summary["class_counts"]
    assert counts["eval"] == {"ok": 2, "scratch": 2, "spot": 2}
    assert result.summary["annotations"]["boxes"] == 2 * N


def test_prefix_names_eval_indices_and_mismatched_box_labels(prefixed, tmp_path):
    ann = os.path.join(os.path.dirname(prefixed), "annotations")
    # A box labelled with another class than its file: reported, not used.
    path = os.path.join(ann, "spot_3.xml")
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("</annotation>",
                             "<object><name>crazing</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
                             "<xmax>4</xmax><ymax>4</ymax></bndbox></object></annotation>"))
    config = _config(format="prefix", eval_indices=(9, 10), validation_fraction=0.25)
    result = APP.ingest(prefixed, config, str(tmp_path / "out"), None)
    examples = _read_all(result.examples_dir)
    assert result.summary["classes"] == ["crazing", "rolled-in_scale", "spot"]
    assert result.summary["eval_source"] == "eval_indices 9-10"
    assert result.summary["image_modes"] == {"RGB": 3 * N}
    assert {e["source"] for e in examples["eval"]} == {
        f"{c}_{i}.png" for c in ("crazing", "rolled-in_scale", "spot") for i in (9, 10)}
    assert all(int(e["source"].split("_")[-1][:-4]) <= 8
               for e in examples["train"] + examples["validation"])
    assert result.summary["annotations"]["box_label_mismatches"] == [
        ["spot_3.png", "crazing", "spot"]]
    spot3 = next(e for s in SPLITS for e in examples[s] if e["source"] == "spot_3.png")
    assert len(spot3["boxes"]) == 4  # only its own box
    # The parent folder (holding images/ and annotations/) reads the same.
    again = APP.ingest(os.path.dirname(prefixed), config, str(tmp_path / "out2"), None)
    assert again.counts == result.counts


def test_train_test_layout_in_anomaly_mode_trains_on_good_parts_only(tmp_path):
    root = data.generate_synthetic(str(tmp_path / "casting"), classes=("ok_front", "def_front"),
                                   n_per_class=12, size=32, layout="train_test", voc=False)
    result = APP.ingest(root, _config("anomaly", validation_fraction=0.25),
                        str(tmp_path / "out"), None)
    examples = _read_all(result.examples_dir)
    assert result.summary["good_classes"] == ["ok_front"] and result.summary["mode"] == "anomaly"
    assert result.summary["eval_source"] == "test/"
    assert all(e["source"].startswith("test/") for e in examples["eval"])
    assert {e["is_defect"] for e in examples["eval"]} == {0, 1}
    assert all(e["class"] == "ok_front" and e["is_defect"] == 0 for e in examples["train"])
    validation = [e["class"] for e in examples["validation"]]
    assert validation.count("ok_front") == 3 and validation.count("def_front") == 12
    assert len(examples["train"]) == 9


def test_same_inputs_give_the_same_untouched_folder(folders, tmp_path):
    config, out = _config(), str(tmp_path / "out")
    first = APP.ingest(folders, config, out, None)
    record = os.path.join(first.examples_dir, "train", examples_io.DATA_FILE)
    written = os.stat(record).st_mtime_ns
    lines: list[str] = []
    again = APP.ingest(folders, config, out, lines.append)
    assert again.examples_dir == first.examples_dir and os.stat(record).st_mtime_ns == written
    assert any("up to date" in line for line in lines)
    copy = shutil.copytree(folders, str(tmp_path / "copy"))
    assert APP.ingest(copy, config, out, None).examples_dir == first.examples_dir
    assert APP.ingest(folders, with_mode(config, "anomaly"), out, None).examples_dir \
        != first.examples_dir


def test_synthetic_defects_lie_inside_their_boxes():
    rng = np.random.default_rng(3)
    for kind in ("scratch", "spot"):
        clean = data.synthetic_surface(np.random.default_rng(7), 64)
        drawn, (x0, y0, x1, y1) = data.draw_defect(np.random.default_rng(7), clean.copy(), kind)
        changed = np.abs(drawn - clean) > 5
        rows, cols = np.nonzero(changed)
        assert rows.min() >= y0 - 1 and rows.max() <= y1 - 1 and cols.min() >= x0 - 1
        assert changed.mean() < 0.2
    del rng


# ------------------------------------------------------------------ bad inputs


def _copy(folders: str, tmp_path) -> str:
    return shutil.copytree(folders, str(tmp_path / "copy"))


BAD_FILES = {
    "corrupt": ("scratch/scratch_99.png", b"\x89PNG\r\n\x1a\n not really a png",
                "cannot decode the image"),
    "truncated": ("spot/spot_99.jpg",
                  harness.encode_image(np.full((32, 32), 128, np.uint8), "JPEG")[:200],
                  "cannot decode the image"),
    "non-image": ("ok/notes.txt", b"shift report", "not an image file"),
    "one-bit-bmp": ("ok/ok_99.bmp", None, "1-bit BMP"),
}


def _write_bad(root: str, case: str) -> str:
    rel, payload, _ = BAD_FILES[case]
    path = os.path.join(root, rel)
    if payload is None:
        Image.fromarray(np.eye(8, dtype=bool)).save(path, format="BMP")
    else:
        with open(path, "wb") as f:
            f.write(payload)
    return path


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_image_files_are_named_or_skipped_and_counted(case, folders, tmp_path):
    root = _copy(folders, tmp_path)
    path = _write_bad(root, case)
    message = harness.check_rejected(APP, _config(), root, tmp_path / "out", path)
    assert BAD_FILES[case][2] in message
    lines: list[str] = []
    result = APP.ingest(root, _config(skip_bad_files=True), str(tmp_path / "skip"),
                        lines.append)
    rel = BAD_FILES[case][0]
    assert [s[0] for s in result.skipped] == [rel]
    assert BAD_FILES[case][2] in result.skipped[0][1]
    assert sum(result.counts.values()) == 3 * N
    assert any(line.startswith(f"skipped {rel}") for line in lines)


def test_empty_class_folder(folders, tmp_path):
    root = _copy(folders, tmp_path)
    os.makedirs(os.path.join(root, "dent"))
    harness.check_rejected(APP, _config(), root, tmp_path / "out",
                           f"{os.path.join(root, 'dent')}: empty class folder")
    result = APP.ingest(root, _config(skip_bad_files=True), str(tmp_path / "skip"), None)
    assert result.skipped == [("dent", "empty class folder; expected JPEG, PNG or BMP "
                                       "images of class 'dent'")]
    assert result.summary["classes"] == ["ok", "scratch", "spot"]


def test_name_that_the_prefix_pattern_does_not_match(prefixed, tmp_path):
    root = str(tmp_path / "images")
    shutil.copytree(prefixed, root)
    odd = os.path.join(root, "IMG0001.png")
    shutil.copy(os.path.join(root, "spot_1.png"), odd)
    message = harness.check_rejected(APP, _config(format="prefix", annotations=""), root,
                                     tmp_path / "out", odd)
    assert "data.prefix_pattern" in message
    result = APP.ingest(root, _config(format="prefix", annotations="", skip_bad_files=True),
                        str(tmp_path / "skip"), None)
    assert [s[0] for s in result.skipped] == ["IMG0001.png"]


def test_malformed_voc_file(prefixed, tmp_path):
    root = str(tmp_path / "neu")
    shutil.copytree(os.path.dirname(prefixed), root)
    xml = os.path.join(root, "annotations", "spot_2.xml")
    with open(xml, "w") as f:
        f.write("<annotation><object><name>spot</name>")  # cut off
    images = os.path.join(root, "images")
    message = harness.check_rejected(APP, _config(format="prefix"), images, tmp_path / "out",
                                     xml)
    assert "not a well-formed XML file" in message
    result = APP.ingest(images, _config(format="prefix", skip_bad_files=True),
                        str(tmp_path / "skip"), None)
    assert [s[0] for s in result.skipped] == ["../annotations/spot_2.xml"]
    assert sum(result.counts.values()) == 3 * N  # the image stays, without boxes


def test_anomaly_mode_without_a_good_part_class(prefixed, tmp_path):
    harness.check_rejected(APP, _config("anomaly", format="prefix"), prefixed,
                           tmp_path / "out", "data.good_classes")
    config = _config("anomaly", format="prefix", good_classes=("crazing",),
                     eval_indices=(9, 10))
    result = APP.ingest(prefixed, config, str(tmp_path / "ok"), None)
    assert result.summary["good_classes"] == ["crazing"]


def test_config_errors_name_the_field():
    from suite.config import replace_path

    with pytest.raises(ValueError, match="data.prefix_pattern"):
        replace_path(TINY, "data.prefix_pattern", "no_group").check()
    with pytest.raises(ValueError, match="data.eval_indices"):
        replace_path(TINY, "data.eval_indices", [240, 201]).check()
    with pytest.raises(ValueError, match="mode"):
        replace_path(TINY, "mode", "segment").check()
    with pytest.raises(ValueError, match="model_name"):
        replace_path(TINY, "mode", "anomaly").check()  # served under the classifier's name
    with pytest.raises(ValueError, match="anomaly.image_size"):
        replace_path(with_mode(TINY, "anomaly"), "anomaly.image_size", 30).check()
    assert with_mode(TINY, "anomaly").check().model_name == "defect_images_anomaly"


def test_a_missing_folder_is_named(tmp_path):
    harness.check_rejected(APP, _config(), str(tmp_path / "nowhere"), tmp_path / "out",
                           "no such folder")
    assert DataConfig().format == "folders"
