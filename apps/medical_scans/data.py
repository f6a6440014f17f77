"""Raw medical images -> tf.Examples holding the encoded image bytes, split by patient.

Formats (``DataConfig.format``):
- ``folders``: a folder of class folders (``path/NORMAL/*.jpeg``, ``path/PNEUMONIA/*.png``),
  or a folder holding ``train/`` (class folders) and optionally ``test/`` or ``val/`` (class
  folders) as the eval split (``test/`` preferred); JPEG and PNG files (.jpeg, .jpg, .png);
- ``dicom``: the same layouts with DICOM files (.dcm, .dicom, or any file starting with the
  DICM preamble), converted to 8-bit grayscale PNG (rescale slope/intercept, then the
  file's window, ``dicom_default_window`` or the full range; MONOCHROME1 inverted);
- ``npz``: a MedMNIST-style .npz file (or a folder holding exactly one): ``train_images``
  (uint8 [N, H, W] or [N, H, W, 3]) and ``train_labels`` ([N] or [N, 1], values 0 / 1),
  plus ``val_*`` and/or ``test_*``; ``npz_eval_split`` names the eval arrays.

Examples carry the ENCODED image (PNG or JPEG file bytes, never decoded pixels) so that a
served model receives exactly what a client sends. JPEG and PNG files are decoded once to
validate them and written as their original bytes; DICOM files and npz arrays are encoded as
PNG. Everything is read and validated before anything is written: a bad file raises a
``DataError`` naming it (or, with ``skip_bad_files``, is skipped with a warning and listed in
the summary), and the examples land atomically in ``<out_root>/<fingerprint>/`` (see
``suite.examples_io``): the same inputs and settings map to the same, untouched folder.

Splits: data with its own eval split (``test/`` or ``val/``; the npz eval arrays) keeps it as
"eval" and carves "validation" from the training data; otherwise "eval" is carved first
(``eval_fraction``), then "validation" from the rest (``validation_fraction``). Carving is by
patient group (``patient_pattern`` on the file name; a file without a match is its own
group) and stratified per class, in an order fixed by a hash of (``split_seed``, group), so
no patient is in two carved splits and the split is deterministic.

TensorFlow and pydicom are imported only by the functions that need them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import tempfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from apps.medical_scans.config import FORMATS, DataConfig, check_data
from apps.medical_scans.features import IMAGE, LABEL, PATIENT, SOURCE, SPLITS, SUBTYPE
from blocks.vision.dicom import encode_png, read_dicom, write_dicom
from blocks.vision.dicom import is_dicom as _is_dicom
from blocks.vision.encoded import check_encoded
from blocks.vision.errors import ImageError
from suite import examples_io

# Bumped whenever the example encoding or the split rules change.
_FORMAT_VERSION = 1


_IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
_JUNK_FILES = frozenset({"thumbs.db", "desktop.ini", "ehthumbs.db"})
_JUNK_FOLDERS = frozenset({"__macosx", "$recycle.bin"})
_EVAL_FOLDERS = ("test", "val")  # in order of preference
_NPZ_SPLITS = ("train", "val", "test")
_PROGRESS_EVERY = 500


class DataError(ImageError):
    """Bad input data; the message starts with the offending path and says what was
    expected. An ``ImageError`` (a ValueError), as the image blocks raise."""


# --------------------------------------------------------------------------------------
# Single images


def _is_junk(name: str) -> bool:
    return name.startswith(".") or name.lower() in _JUNK_FILES


def is_image_file(path: str) -> bool:
    """Whether ``path`` is an image file ingestion and prediction read: JPEG / PNG by name,
    DICOM by name or preamble (junk files such as thumbs.db and hidden files are not)."""
    name = os.path.basename(path)
    return (not _is_junk(name) and os.path.isfile(path)
            and (name.lower().endswith(_IMAGE_EXTENSIONS) or _is_dicom(path)))


def _read_dicom(path: str, config: DataConfig) -> tuple[np.ndarray, str]:
    """``blocks.vision.dicom.read_dicom`` (uint8 [H, W] image, PatientID) with the
    config's default window and accepted modalities and views, its errors raised as
    DataError with the same message."""
    try:
        return read_dicom(path, config.dicom_default_window,
                          modalities=config.dicom_modalities, views=config.dicom_views)
    except DataError:
        raise
    except ImageError as e:
        raise DataError(str(e)) from e


def dicom_to_uint8(path: str, config: DataConfig | None = None) -> np.ndarray:
    """A DICOM file's image as uint8 [H, W] (``blocks.vision.dicom.dicom_to_uint8``); bad
    files, and modalities or views the config (default: DataConfig()) does not accept,
    raise DataError."""
    return _read_dicom(path, config or DataConfig())[0]


def _check_encoded(path: str, data: bytes) -> None:
    """Decodes JPEG or PNG bytes fully (``blocks.vision.encoded.check_encoded``); raises
    DataError naming ``path`` when they are not an image a served model can decode."""
    try:
        check_encoded(path, data, ("JPEG", "PNG"), "expected a JPEG, PNG or DICOM image")
    except ImageError as e:
        raise DataError(str(e)) from e


def load_image_bytes(path: str, config: DataConfig) -> bytes:
    """One image file as encoded bytes a served model accepts.

    JPEG and PNG files are decoded fully (grayscale, RGB and 16-bit PNG accepted) and
    returned as their original bytes; DICOM files (.dcm, .dicom, or the DICM preamble) are
    converted with ``dicom_to_uint8`` and encoded as 8-bit grayscale PNG. Anything else, or a
    damaged file, raises a DataError naming the file.
    """
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file; expected a JPEG, PNG or DICOM image")
    if _is_dicom(path):
        return encode_png(dicom_to_uint8(path, config))
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read the file ({e}); expected a JPEG, PNG or "
                        "DICOM image") from e
    _check_encoded(path, data)
    return data


def image_example(image_bytes: bytes, *, label: int | None = None, subtype: str = "none",
                  patient: str = "", source: str = "") -> bytes:
    """A serialized tf.train.Example: the encoded image and, when ``label`` is given, the
    label, subtype, patient and source features; without a label only the image (a serving
    request)."""
    import tensorflow as tf  # noqa: PLC0415

    def text(value: str):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[examples_io.utf8(value)]))

    feature = {IMAGE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_bytes]))}
    if label is not None:
        feature[LABEL] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)]))
        feature[SUBTYPE] = text(subtype)
        feature[PATIENT] = text(patient)
        feature[SOURCE] = text(source)
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


# --------------------------------------------------------------------------------------
# Scanning folders


@dataclass
class _Candidate:
    """An input file found in a class folder, before validation."""

    rel: str  # relative to the data folder, "/" separated
    path: str
    label: int
    origin: str  # "train" or "eval" (the data's own eval folder)
    folder: str  # the class folder


@dataclass
class _Scan:
    """What a data folder holds."""

    layout: str
    eval_source: str  # the eval folder name ("test", "val") or "" (carved)
    candidates: list[_Candidate]
    ignored_folders: list[str]
    ignored_files: list[str]


def _rel(path: str, root: str) -> str:
    return os.path.relpath(path, root).replace(os.sep, "/")


def _subfolders(folder: str) -> list[str]:
    return sorted(n for n in os.listdir(folder)
                  if os.path.isdir(os.path.join(folder, n)) and not _is_junk(n)
                  and n.lower() not in _JUNK_FOLDERS)


def _scan_split(root: str, base: str, config: DataConfig, origin: str, scan: _Scan) -> None:
    """Adds the files of every class folder under ``root`` to ``scan``."""
    found = _subfolders(root)
    kind = "DICOM files" if config.format == "dicom" else "JPEG or PNG images"
    missing = [c for c in config.classes if c not in found]
    if missing:
        raise DataError(f"{os.path.join(root, missing[0])}: missing class folder; expected "
                        f"one folder per class {list(config.classes)} holding {kind}, found "
                        f"folders {found} in {root}")
    scan.ignored_folders += [_rel(os.path.join(root, n), base) for n in found
                             if n not in config.classes]
    scan.ignored_files += sorted(_rel(os.path.join(root, n), base) for n in os.listdir(root)
                                 if os.path.isfile(os.path.join(root, n)) and not _is_junk(n))
    for label, name in enumerate(config.classes):
        folder = os.path.join(root, name)
        files = []
        for current, dirs, names in os.walk(folder):
            dirs[:] = sorted(d for d in dirs
                             if not _is_junk(d) and d.lower() not in _JUNK_FOLDERS)
            files += [os.path.join(current, n) for n in sorted(names) if not _is_junk(n)]
        if not files:
            raise DataError(f"{folder}: empty class folder (expected {kind})")
        scan.candidates += [_Candidate(_rel(f, base), f, label, origin, folder)
                            for f in files]


def _scan_folders(path: str, config: DataConfig) -> _Scan:
    if not os.path.isdir(path):
        what = "DICOM files" if config.format == "dicom" else "images"
        problem = "not a folder" if os.path.exists(path) else "no such folder"
        raise DataError(f"{path}: {problem}; expected a folder of class folders "
                        f"{list(config.classes)} of {what}, or one holding train/ (and test/ "
                        "or val/) class folders")
    top = _subfolders(path)
    if "train" not in top:
        scan = _Scan("class-folders", "", [], [], [])
        _scan_split(path, path, config, "train", scan)
        return scan
    eval_name = next((n for n in _EVAL_FOLDERS if n in top), "")
    scan = _Scan(f"train+{eval_name}" if eval_name else "train", eval_name, [], [], [])
    scan.ignored_folders += [n for n in top if n not in ("train", eval_name)]
    scan.ignored_files += sorted(n for n in os.listdir(path)
                                 if os.path.isfile(os.path.join(path, n)) and not _is_junk(n))
    _scan_split(os.path.join(path, "train"), path, config, "train", scan)
    if eval_name:
        _scan_split(os.path.join(path, eval_name), path, config, "eval", scan)
    return scan


# --------------------------------------------------------------------------------------
# Validated records


@dataclass
class _Record:
    """One validated image and where its encoded bytes come from."""

    source: str
    label: int
    origin: str  # "train" or "eval"
    patient: str
    subtype: str
    path: str = ""  # re-read JPEG/PNG file
    size: int = 0
    crc: int = 0
    spool: tuple[int, int] | None = None  # (offset, length) of converted PNG bytes
    npz: tuple[str, int] | None = None  # (split, index) in the npz arrays


def _first_group(pattern: str, name: str) -> str | None:
    if not pattern:
        return None
    match = re.search(pattern, name)
    if match is None:
        return None
    return match.group(1) if match.re.groups else match.group(0)


def _subtype(config: DataConfig, name: str) -> str:
    value = _first_group(config.subtype_pattern, name)
    return value.lower() if value else "none"


def _validate_files(scan: _Scan, config: DataConfig, spool,
                    progress: Callable[[str], None] | None
                    ) -> tuple[list[_Record], list[tuple[str, str]]]:
    """Decodes every candidate once; DICOM files are converted to PNG into ``spool``."""
    records: list[_Record] = []
    skipped: list[tuple[str, str]] = []
    dicom = config.format == "dicom"
    total = len(scan.candidates)
    for number, c in enumerate(scan.candidates, start=1):
        name = os.path.basename(c.rel)
        try:
            if dicom:
                if not _is_dicom(c.path):
                    raise DataError(f"{c.path}: not a DICOM file; expected .dcm files or "
                                    "files starting with the DICM preamble")
                pixels, patient_id = _read_dicom(c.path, config)
                png = encode_png(pixels)
                offset = spool.seek(0, os.SEEK_END)
                spool.write(png)
                patient = (_first_group(config.patient_pattern, name) or patient_id
                           or c.rel)
                record = _Record(c.rel, c.label, c.origin, patient, _subtype(config, name),
                                 spool=(offset, len(png)))
            else:
                if not name.lower().endswith(_IMAGE_EXTENSIONS):
                    raise DataError(f"{c.path}: not an image file; expected a JPEG or PNG "
                                    "image (.jpeg, .jpg or .png)")
                data = load_image_bytes(c.path, config)
                record = _Record(c.rel, c.label, c.origin,
                                 _first_group(config.patient_pattern, name) or c.rel,
                                 _subtype(config, name), path=c.path, size=len(data),
                                 crc=zlib.crc32(data))
        except DataError as e:
            examples_io.skip_or_raise(e, c.path, c.rel, config.skip_bad_files, skipped,
                                      progress)
            continue
        records.append(record)
        if progress and (number % _PROGRESS_EVERY == 0 or number == total):
            progress(f"validated {number}/{total} files")
    return records, skipped


def _npz_file(path: str) -> str:
    if os.path.isdir(path):
        found = sorted(n for n in os.listdir(path) if n.lower().endswith(".npz"))
        if len(found) != 1:
            raise DataError(f"{path}: expected a folder holding exactly one .npz file, found "
                            f"{found or 'none'}")
        return os.path.join(path, found[0])
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file; expected a MedMNIST-style .npz file")
    return path


def _load_npz(path: str, config: DataConfig) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]],
                                                       list[str]]:
    """The validated (images, labels) of the train split and of the eval split (when the
    file has it), and the names of the splits left unused."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = sorted(archive.files)

            def need(key: str) -> np.ndarray:
                if key not in keys:
                    raise DataError(f"{path}: missing array {key!r}; expected MedMNIST "
                                    f"arrays <split>_images and <split>_labels, found {keys}")
                return archive[key]

            wanted = ["train"]
            eval_split = config.npz_eval_split
            if f"{eval_split}_images" in keys or f"{eval_split}_labels" in keys:
                wanted.append(eval_split)
            arrays = {split: (need(f"{split}_images"), need(f"{split}_labels"))
                      for split in wanted}
    except DataError:
        raise
    except Exception as e:  # not a zip, a damaged member, pickled objects...
        raise DataError(f"{path}: cannot read the .npz file ({e}); expected a MedMNIST-style "
                        ".npz file") from e
    unused = [s for s in _NPZ_SPLITS if s not in arrays and f"{s}_images" in keys]
    checked = {}
    for split, (images, labels) in arrays.items():
        key = f"{split}_images"
        if images.ndim == 4 and images.shape[3] == 1:
            images = images[:, :, :, 0]
        if not (images.ndim == 3 or (images.ndim == 4 and images.shape[3] == 3)):
            raise DataError(f"{path}: {key} has shape {list(images.shape)}; expected "
                            "[N, H, W] or [N, H, W, 3]")
        if images.dtype != np.uint8:
            raise DataError(f"{path}: {key} has dtype {images.dtype}; expected uint8")
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1:
            raise DataError(f"{path}: {split}_labels has shape {list(labels.shape)}; expected "
                            "[N] or [N, 1] binary labels")
        if len(images) != len(labels):
            raise DataError(f"{path}: {key} holds {len(images)} images but {split}_labels "
                            f"holds {len(labels)} labels; expected one label per image")
        if len(images) == 0:
            raise DataError(f"{path}: {key} is empty; expected images")
        values = np.unique(labels)
        if not np.isin(values, (0, 1)).all():
            raise DataError(f"{path}: {split}_labels holds values "
                            f"{values[:10].tolist()}; expected 0 ({config.classes[0]}) or "
                            f"1 ({config.classes[1]})")
        checked[split] = (images, labels.astype(np.int64))
    return checked, unused


# --------------------------------------------------------------------------------------
# Splitting


def _group_order(seed: int, group: str) -> str:
    return hashlib.sha256(examples_io.utf8(f"{seed}\0{group}")).hexdigest()


def _carve(records: Sequence[_Record], pool: Sequence[int], fraction: float, seed: int,
           n_classes: int) -> set[int]:
    """Indices (of ``pool``) of the held-out share: per class, patient groups in hash order
    until the class's held-out images reach ``fraction`` of its images; a chosen group goes
    whole (with its images of every class). A group holding the last images of a class left
    in the pool is passed over, so every class keeps training images."""
    if fraction <= 0.0:
        return set()
    members: dict[str, list[int]] = {}
    for i in pool:
        members.setdefault(records[i].patient, []).append(i)
    left = Counter(records[i].label for i in pool)
    held_groups: set[str] = set()
    for label in range(n_classes):
        of_class = [i for i in pool if records[i].label == label]
        target = fraction * len(of_class)
        held = sum(1 for i in of_class if records[i].patient in held_groups)
        groups = sorted({records[i].patient for i in of_class},
                        key=lambda g: (_group_order(seed, g), g))
        for group in groups:
            if held >= target:
                break
            if group in held_groups:
                continue
            taken = Counter(records[i].label for i in members[group])
            if any(left[c] <= n for c, n in taken.items()):
                continue  # it would take a class's last images out of the pool
            left.subtract(taken)
            held_groups.add(group)
            held += sum(1 for i in members[group] if records[i].label == label)
    return {i for i in pool if records[i].patient in held_groups}


def _plan(records: Sequence[_Record], config: DataConfig, has_eval: bool, where: str
          ) -> dict[str, list[int]]:
    """Record indices per split, each in a seeded shuffled order."""
    n_classes = len(config.classes)
    if has_eval:
        evals = [i for i, r in enumerate(records) if r.origin == "eval"]
        pool = [i for i, r in enumerate(records) if r.origin != "eval"]
    else:
        pool = list(range(len(records)))
        held = _carve(records, pool, config.eval_fraction, config.split_seed, n_classes)
        evals = [i for i in pool if i in held]
        pool = [i for i in pool if i not in held]
    held = _carve(records, pool, config.validation_fraction, config.split_seed, n_classes)
    splits = {"train": [i for i in pool if i not in held],
              "validation": [i for i in pool if i in held], "eval": evals}
    for label, name in enumerate(config.classes):
        if not any(records[i].label == label for i in splits["train"]):
            images = [i for i, r in enumerate(records) if r.label == label]
            groups = {records[i].patient for i in images}
            raise DataError(f"{where}: class {name!r} has {len(images)} usable image(s) in "
                            f"{len(groups)} patient group(s), none left for training after "
                            "holding out eval and validation; expected more images of it "
                            "(or lower eval_fraction / validation_fraction)")
    for number, split in enumerate(SPLITS):
        order = sorted(splits[split], key=lambda i: records[i].source)
        rng = np.random.default_rng([config.split_seed, number])
        splits[split] = [order[k] for k in rng.permutation(len(order))]
    return splits


# --------------------------------------------------------------------------------------
# Ingest


# DataConfig fields that do not shape the examples of a format (left out of the fingerprint).
_UNUSED_FIELDS = {
    "folders": ("npz_eval_split", "dicom_default_window"),
    "dicom": ("npz_eval_split",),
    "npz": ("subtype_pattern", "patient_pattern", "dicom_default_window", "skip_bad_files"),
}


def _settings(config: DataConfig) -> dict:
    fields = dataclasses.asdict(config)
    for name in _UNUSED_FIELDS[config.format]:
        fields.pop(name, None)
    return {"format_version": _FORMAT_VERSION, "config": fields}


def _summary(records: Sequence[_Record], splits: dict[str, list[int]], config: DataConfig,
             source: str, layout: str, eval_source: str, skipped: list[tuple[str, str]],
             extra: dict) -> dict:
    class_counts = {s: {c: 0 for c in config.classes} for s in SPLITS}
    subtypes: dict[str, dict[str, int]] = {}
    patients: dict[str, int] = {}
    groups: dict[str, set[str]] = {}
    for split in SPLITS:
        for i in splits[split]:
            class_counts[split][config.classes[records[i].label]] += 1
        subtypes[split] = dict(sorted(Counter(records[i].subtype
                                              for i in splits[split]).items()))
        groups[split] = {records[i].patient for i in splits[split]}
        patients[split] = len(groups[split])
    summary = {
        "format_version": _FORMAT_VERSION,
        "format": config.format,
        "source": source,
        "layout": layout,
        "eval_source": eval_source,
        "classes": list(config.classes),
        "config": dataclasses.asdict(config),
        "images": len(records),
        "class_counts": class_counts,
        "subtypes": subtypes,
        "patients": patients,
        # Only possible when the data brings its own eval split: carving never splits groups.
        "patients_in_train_and_eval": len((groups["train"] | groups["validation"])
                                          & groups["eval"]),
        "skipped": [list(s) for s in skipped],
    }
    summary.update(extra)
    return json.loads(json.dumps(summary))  # as read back from summary.json (no tuples)


def _file_examples(records: Sequence[_Record], order: Sequence[int], spool
                   ) -> Iterator[bytes]:
    for i in order:
        r = records[i]
        if r.spool is not None:
            spool.seek(r.spool[0])
            data = spool.read(r.spool[1])
        else:
            with open(r.path, "rb") as f:
                data = f.read()
            if len(data) != r.size or zlib.crc32(data) != r.crc:
                raise DataError(f"{r.path}: the file changed during ingestion; expected it "
                                "unchanged between validation and writing")
        yield image_example(data, label=r.label, subtype=r.subtype, patient=r.patient,
                            source=r.source)


def _npz_examples(records: Sequence[_Record], order: Sequence[int],
                  arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> Iterator[bytes]:
    for i in order:
        r = records[i]
        split, index = r.npz
        yield image_example(encode_png(arrays[split][0][index]), label=r.label,
                            subtype=r.subtype, patient=r.patient, source=r.source)


def _check_classes(summary: dict, config: DataConfig, where: str,
                   progress: Callable[[str], None] | None) -> None:
    """Both classes in the train and eval splits (the validation split may be empty)."""
    examples_io.check_class_coverage(
        {s: summary["class_counts"][s] for s in ("train", "eval")}, where,
        allow_missing=config.allow_missing_classes, progress=progress)


def ingest(path: str, config: DataConfig, out_root: str,
           progress: Callable[[str], None] | None = None) -> examples_io.IngestResult:
    """Validates every image, splits by patient, then writes train/, validation/ and eval/
    TFRecords under ``out_root/<fingerprint>`` with a ``summary.json``; a finished folder for
    the same inputs and settings is returned untouched."""
    check_data(config)
    if config.format == "npz":
        return _ingest_npz(path, config, out_root, progress)
    scan = _scan_folders(path, config)

    @contextlib.contextmanager
    def produce():
        if progress:
            progress(f"found {len(scan.candidates)} files in {path} (layout {scan.layout})")
        with tempfile.TemporaryFile(prefix="medical-scans-") as spool:
            records, skipped = _validate_files(scan, config, spool, progress)
            folders = {(c.label, c.origin): c.folder for c in scan.candidates}
            for (label, origin), folder in folders.items():
                if not any(r.label == label and r.origin == origin for r in records):
                    raise DataError(f"{folder}: no readable images ({len(skipped)} bad files "
                                    "skipped); expected at least one image per class")
            splits = _plan(records, config, bool(scan.eval_source), path)
            summary = _summary(records, splits, config,
                               os.path.basename(os.path.normpath(path)), scan.layout,
                               f"{scan.eval_source}/" if scan.eval_source else "carved",
                               skipped, {"ignored_folders": scan.ignored_folders,
                                         "ignored_files": scan.ignored_files})
            _check_classes(summary, config, path, progress)
            yield {s: _file_examples(records, splits[s], spool) for s in SPLITS}, summary

    fingerprint = examples_io.content_fingerprint(
        _settings(config), [(c.rel, c.path) for c in scan.candidates])
    return examples_io.ingest_once(out_root, fingerprint, produce, progress)


def _ingest_npz(path: str, config: DataConfig, out_root: str,
                progress: Callable[[str], None] | None) -> examples_io.IngestResult:
    file = _npz_file(path)
    name = os.path.basename(file)

    def produce():
        arrays, unused = _load_npz(file, config)
        records = [_Record(f"{name}:{split}[{i}]", int(label),
                           "eval" if split != "train" else "train", f"{split}-{i}", "none",
                           npz=(split, i))
                   for split, (_, labels) in arrays.items() for i, label in enumerate(labels)]
        has_eval = len(arrays) > 1
        if progress:
            progress(f"read {len(records)} images from {file}"
                     + ("" if has_eval else f" (no {config.npz_eval_split}_* arrays: eval is "
                        "carved from train)"))
        splits = _plan(records, config, has_eval, file)
        summary = _summary(records, splits, config, name, "npz",
                           f"{config.npz_eval_split}_*" if has_eval else "carved", [],
                           {"ignored_splits": unused,
                            "image_shape": list(arrays["train"][0].shape[1:])})
        _check_classes(summary, config, file, progress)
        return examples_io.produced(
            {s: _npz_examples(records, splits[s], arrays) for s in SPLITS}, summary)

    fingerprint = examples_io.content_fingerprint(_settings(config), [(name, file)])
    return examples_io.ingest_once(out_root, fingerprint, produce, progress)


# --------------------------------------------------------------------------------------
# Synthetic chest X-rays


def _synthetic_xray(rng: np.random.Generator, size: int, positive: bool) -> np.ndarray:
    """A uint8 [size, size] image: a noisy bright body, two darker lung ellipses and, when
    ``positive``, one or two bright blurred opacities inside a lung."""
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size
    image = 175.0 + rng.normal(0.0, 12.0, (size, size))
    lungs = []
    for side in (-1.0, 1.0):
        cx = 0.5 + side * (0.2 + rng.uniform(-0.02, 0.02))
        cy = 0.5 + rng.uniform(-0.04, 0.04)
        rx, ry = 0.14 + rng.uniform(-0.02, 0.02), 0.3 + rng.uniform(-0.04, 0.04)
        inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
        image[inside] -= 90.0 + rng.uniform(-10.0, 10.0)
        lungs.append((cx, cy, rx, ry))
    if positive:
        for _ in range(int(rng.integers(1, 3))):
            cx, cy, rx, ry = lungs[int(rng.integers(2))]
            bx, by = cx + rng.uniform(-0.45, 0.45) * rx, cy + rng.uniform(-0.5, 0.5) * ry
            sigma = rng.uniform(0.05, 0.08)
            image += rng.uniform(70.0, 100.0) * np.exp(
                -((xx - bx) ** 2 + (yy - by) ** 2) / (2.0 * sigma * sigma))
    smooth = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(radius=max(0.5, size / 96.0)))
    return np.asarray(smooth, dtype=np.uint8)


# Writes the synthetic (and test) DICOM files.
_write_dicom = write_dicom


def generate_synthetic(path: str, fmt: str = "folders", *, n_per_class: int = 40,
                       size: int = 48, seed: int = 0) -> str:
    """Writes small, learnable synthetic chest X-rays in format ``fmt``; returns what to pass
    to ``ingest``.

    Noise backgrounds with two darker lung ellipses; PNEUMONIA images add one or two bright
    blurred opacities inside a lung. ``folders``: ``path/NORMAL/IM-<4 digits>-0001.png`` and
    ``path/PNEUMONIA/person<id>_<bacteria|virus>_<k>.png``, two or three images per
    pneumonia patient. ``dicom``: the same names as .dcm (MONOCHROME2, 16-bit, with a
    rescale slope / intercept and a window that give back the PNG pixels exactly).
    ``npz``: ``path`` is a .npz file with ``train_*`` (``n_per_class`` per class) and
    ``val_*`` arrays, labels shaped [N, 1]. Deterministic for a seed.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt: expected one of {list(FORMATS)}, got {fmt!r}")
    rng = np.random.default_rng(seed)
    if fmt == "npz":
        n_val = max(2, n_per_class // 4)
        arrays = {}
        for split, n in (("train", n_per_class), ("val", n_val)):
            labels = rng.permutation(np.repeat(np.array([0, 1], np.uint8), n))
            arrays[f"{split}_images"] = np.stack(
                [_synthetic_xray(rng, size, bool(y)) for y in labels])
            arrays[f"{split}_labels"] = labels.reshape(-1, 1)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "wb") as f:  # a file object: numpy appends no ".npz"
            np.savez_compressed(f, **arrays)
        return path

    items: list[tuple[str, str, str, bool]] = []  # (class folder, stem, patient, positive)
    for i in range(n_per_class):
        items.append(("NORMAL", f"IM-{i + 1:04d}-0001", f"IM-{i + 1:04d}", False))
    remaining, person, k = n_per_class, 0, 0
    while remaining > 0:
        count = min(int(rng.integers(2, 4)), remaining)
        if remaining - count == 1:  # no single-image patient at the end
            count = count + 1 if count < 3 else count - 1
        person += 1
        subtype = "bacteria" if rng.random() < 0.6 else "virus"
        for _ in range(count):
            k += 1
            items.append(("PNEUMONIA", f"person{person}_{subtype}_{k}", f"person{person}",
                          True))
        remaining -= count
    for folder in ("NORMAL", "PNEUMONIA"):
        os.makedirs(os.path.join(path, folder), exist_ok=True)
    for folder, stem, patient, positive in items:
        image = _synthetic_xray(rng, size, positive)
        if fmt == "folders":
            with open(os.path.join(path, folder, f"{stem}.png"), "wb") as f:
                f.write(encode_png(image))
        else:
            # Real values 4 * pixel - 500, stored as 2 * pixel + 250 (slope 2, intercept
            # -1000); the window [-500, 520] maps them back onto the pixels exactly.
            _write_dicom(os.path.join(path, folder, f"{stem}.dcm"),
                         image.astype(np.uint16) * 2 + 250, slope=2, intercept=-1000,
                         window=(10, 1020), patient_id=patient)
    return path
