"""Camera images of parts -> tf.Examples holding the ENCODED image bytes, split by class.

Layouts (``DataConfig.format``):
- ``folders``: one folder per class (``path/ok_front/*.jpeg``, ``path/def_front/*.jpeg``), or
  ``train/`` and ``test/`` (or ``val/``) folders of class folders, the latter being the eval
  split (the casting-product data set's layout);
- ``prefix``: one flat folder where the class is captured from each file name by
  ``prefix_pattern`` (NEU: ``crazing_12.jpg``, ``rolled-in_scale_7.jpg``); the folder may also
  be the parent of an ``images/`` folder, or hold flat ``train/`` and ``test/`` folders.
JPEG, PNG and BMP files, grayscale or colour (the model converts them, see preprocessing).
Optional Pascal VOC XML files (``<image stem>.xml``, in an ``annotations`` folder inside or
next to the data folder, or beside the images) give defect boxes: they are kept in the
examples (``boxes``, ``box_fraction``, ``defect_size`` for slicing) and let explanations be
checked against them. A box labelled with another class than its image is reported in the
summary (``box_label_mismatches``) and left out, never silently used.

Examples carry the encoded file bytes, never decoded pixels, so the served model takes what a
camera sends. Every image is decoded once here to validate it. Everything is read and
validated before anything is written: a bad file (corrupt or truncated image, non-image file,
a name the prefix pattern does not match, an XML that is not well-formed) raises a
``DataError`` naming it, or with ``skip_bad_files`` is skipped, reported through ``progress``
and listed in the summary's ``skipped``; the examples land atomically in
``<out_root>/<fingerprint>/`` (``suite.examples_io``).

Splits: a ``test/`` (or ``val/``) folder, else the images numbered in ``eval_indices``, else a
stratified ``eval_fraction`` of each class is the eval split; a stratified
``validation_fraction`` of each class of the rest is the validation split (early stopping,
anomaly thresholds). In anomaly mode the training split holds good parts only: the defects
outside the eval split go to the validation split, where they can set the threshold.
Carving is per class in an order fixed by a hash of (``split_seed``, file name).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import xml.etree.ElementTree as ET
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from apps.defect_images.config import FORMATS, GOOD_CLASS_PATTERN, MODES, DataConfig, check_data
from apps.defect_images.features import (
    BOX_FRACTION, BOXES, CLASS_NAME, DEFECT_SIZE, IMAGE, IS_DEFECT, LABEL, SOURCE, SPLITS)
from blocks.vision.encoded import check_encoded
from blocks.vision.errors import ImageError
from suite import examples_io

Progress = Callable[[str], None]

# Bumped whenever the example encoding or the split rules change.
_FORMAT_VERSION = 1

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
ANNOTATION_FOLDERS = ("annotations", "Annotations")
_EVAL_FOLDERS = ("test", "val")  # in order of preference
_IMAGE_FOLDERS = ("images", "JPEGImages")
_JUNK_FILES = frozenset({"thumbs.db", "desktop.ini", "ehthumbs.db"})
_JUNK_FOLDERS = frozenset({"__macosx", "$recycle.bin"})
_PROGRESS_EVERY = 500
# Defect size buckets of the box area fraction (slicing).
_SIZE_BUCKETS = ((0.05, "small"), (0.25, "medium"), (1.01, "large"))
_EXPECTED = "expected a JPEG, PNG or BMP image"


class DataError(ImageError):
    """Bad input data; the message starts with the offending path (or field) and says what
    was expected."""


# --------------------------------------------------------------------------------------
# Single images


def _is_junk(name: str) -> bool:
    return name.startswith(".") or name.lower() in _JUNK_FILES


def check_image_bytes(path: str, data: bytes) -> dict:
    """Decodes JPEG, PNG or BMP bytes fully (``blocks.vision.encoded.check_encoded``);
    returns their format, mode, width and height, or raises DataError naming ``path``."""
    try:
        return check_encoded(path, data, ("JPEG", "PNG", "BMP"), _EXPECTED)
    except ImageError as e:
        raise DataError(str(e)) from e


def load_image_bytes(path: str) -> bytes:
    """One image file's bytes, after checking that they decode (``check_image_bytes``);
    anything else raises a DataError naming the file."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file; {_EXPECTED}")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read the file ({e}); {_EXPECTED}") from e
    check_image_bytes(path, data)
    return data


def image_example(image_bytes: bytes, *, label: int | None = None, class_name: str = "",
                  is_defect: int = 0, source: str = "", boxes: Sequence[float] = (),
                  box_fraction: float = 0.0, defect_size: str = "unannotated") -> bytes:
    """A serialized tf.train.Example: the encoded image and, when ``label`` is given, the
    label and the other stored features; without a label only the image (what a serving
    client sends)."""
    import tensorflow as tf  # noqa: PLC0415

    def text(value: str):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))

    def integer(value: int):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    feature = {IMAGE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_bytes]))}
    if label is not None:
        feature.update({
            LABEL: integer(label), IS_DEFECT: integer(is_defect), CLASS_NAME: text(class_name),
            SOURCE: text(source), DEFECT_SIZE: text(defect_size),
            BOX_FRACTION: tf.train.Feature(float_list=tf.train.FloatList(
                value=[float(box_fraction)]))})
        if len(boxes):
            feature[BOXES] = tf.train.Feature(float_list=tf.train.FloatList(
                value=[float(v) for v in boxes]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


# --------------------------------------------------------------------------------------
# Pascal VOC boxes


@dataclass(frozen=True)
class Box:
    """One VOC object: its label and its box as fractions of the image (x right, y down)."""

    name: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float


def read_voc(path: str, image_size: tuple[int, int] | None = None) -> list[Box]:
    """The objects of a Pascal VOC XML file, boxes as fractions of the image size (the
    file's <size>, else ``image_size`` = (width, height)), clipped to the image. Raises a
    DataError naming the file when it is not well-formed VOC."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        raise DataError(f"{path}: not a well-formed XML file ({e}); expected a Pascal VOC "
                        "annotation") from e
    if root.tag != "annotation":
        raise DataError(f"{path}: root element <{root.tag}>; expected a Pascal VOC "
                        "<annotation>")

    def number(element, tag: str, where: str) -> float:
        text = element.findtext(tag)
        try:
            return float(text)
        except (TypeError, ValueError):
            raise DataError(f"{path}: {where}: <{tag}> is {text!r}; expected a number") \
                from None

    width, height = image_size or (0, 0)
    size = root.find("size")
    if size is not None and size.findtext("width") and size.findtext("height"):
        width, height = number(size, "width", "<size>"), number(size, "height", "<size>")
    if width <= 0 or height <= 0:
        raise DataError(f"{path}: no image <size> (width, height); expected a Pascal VOC "
                        "annotation with the image size")
    boxes = []
    for i, obj in enumerate(root.findall("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        where = f"<object> {i} ({name or 'no name'})"
        box = obj.find("bndbox")
        if box is None:
            raise DataError(f"{path}: {where} has no <bndbox>; expected xmin, ymin, xmax, "
                            "ymax")
        x0, y0 = number(box, "xmin", where), number(box, "ymin", where)
        x1, y1 = number(box, "xmax", where), number(box, "ymax", where)
        if x1 <= x0 or y1 <= y0:
            raise DataError(f"{path}: {where}: empty box ({x0:g}, {y0:g}, {x1:g}, {y1:g}); "
                            "expected xmin < xmax and ymin < ymax")
        # VOC pixel coordinates are 1-based and inclusive.
        boxes.append(Box(name, min(max((x0 - 1) / width, 0.0), 1.0),
                         min(max((y0 - 1) / height, 0.0), 1.0),
                         min(max(x1 / width, 0.0), 1.0), min(max(y1 / height, 0.0), 1.0)))
    return boxes


def boxes_mask(boxes: Sequence[float] | Sequence[Box], height: int, width: int) -> np.ndarray:
    """bool [height, width]: the pixels inside any of the boxes (Box objects, or fractions
    flattened as [xmin, ymin, xmax, ymax] * n)."""
    flat = [v for b in boxes for v in (b.xmin, b.ymin, b.xmax, b.ymax)] \
        if boxes and isinstance(boxes[0], Box) else list(boxes)
    mask = np.zeros((height, width), bool)
    for k in range(0, len(flat) - 3, 4):
        x0, y0, x1, y1 = flat[k:k + 4]
        c0, r0 = int(np.floor(x0 * width)), int(np.floor(y0 * height))
        c1, r1 = max(int(np.ceil(x1 * width)), c0 + 1), max(int(np.ceil(y1 * height)), r0 + 1)
        mask[r0:r1, c0:c1] = True
    return mask


def defect_size(fraction: float, annotated: bool) -> str:
    """The size bucket of a box area fraction: small, medium, large (or unannotated)."""
    if not annotated:
        return "unannotated"
    return next(name for limit, name in _SIZE_BUCKETS if fraction < limit)


def find_annotation(image_path: str, folder: str | None) -> str | None:
    """The VOC file of an image: ``<folder>/<stem>.xml`` (``folder`` None: beside the
    image), or None."""
    stem = os.path.splitext(os.path.basename(image_path))[0]
    here = folder if folder is not None else os.path.dirname(image_path)
    path = os.path.join(here, f"{stem}.xml")
    return path if os.path.isfile(path) else None


# --------------------------------------------------------------------------------------
# Scanning


@dataclass
class _Candidate:
    """An image file found, before validation."""

    rel: str  # relative to the data folder, "/" separated
    path: str
    class_name: str
    origin: str  # "train" or "eval" (the data's own eval folder)
    index: int | None  # the last run of digits in the file name
    annotation: str | None = None  # its VOC file


@dataclass
class _Scan:
    """What a data folder holds."""

    root: str
    layout: str
    eval_source: str  # the eval folder name ("test", "val") or ""
    candidates: list[_Candidate]
    bad: list[tuple[str, str, str]]  # (path, rel, message) found while scanning
    ignored_files: list[str]
    ignored_folders: list[str]
    class_folders: dict[tuple[str, str], str]  # (class, origin) -> folder
    annotations: str | None  # the annotation folder, "" = beside the images, None = none
    annotation_files: dict[str, str]  # rel -> path of every XML file considered


def _rel(path: str, root: str) -> str:
    return os.path.relpath(path, root).replace(os.sep, "/")


def _subfolders(folder: str) -> list[str]:
    return sorted(n for n in os.listdir(folder)
                  if os.path.isdir(os.path.join(folder, n)) and not _is_junk(n)
                  and n.lower() not in _JUNK_FOLDERS)


def _files(folder: str, recursive: bool) -> list[str]:
    if not recursive:
        return sorted(os.path.join(folder, n) for n in os.listdir(folder)
                      if os.path.isfile(os.path.join(folder, n)) and not _is_junk(n))
    found = []
    for current, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _is_junk(d) and d.lower() not in _JUNK_FOLDERS)
        found += [os.path.join(current, n) for n in sorted(names) if not _is_junk(n)]
    return found


def _number(name: str) -> int | None:
    digits = re.findall(r"\d+", os.path.splitext(name)[0])
    return int(digits[-1]) if digits else None


def _class_from_name(pattern: re.Pattern, name: str) -> str | None:
    match = pattern.fullmatch(os.path.splitext(name)[0])
    if match is None:
        return None
    value = match.group("cls") if "cls" in pattern.groupindex else match.group(1)
    return value or None


def _annotation_folder(path: str, setting: str) -> str | None:
    """The VOC folder for a data folder: a path, "" (beside the images) or None (none)."""
    if setting == "":
        return None
    if setting != "auto":
        if not os.path.isdir(setting):
            raise DataError(f"{setting}: no such folder; expected the Pascal VOC annotation "
                            "folder (data.annotations)")
        return setting
    for base in (path, os.path.dirname(os.path.abspath(path))):
        for name in ANNOTATION_FOLDERS:
            if os.path.isdir(os.path.join(base, name)):
                return os.path.join(base, name)
    return ""


def _scan(path: str, config: DataConfig) -> _Scan:
    """Finds the image files, their classes and annotation files; no image is decoded."""
    if not os.path.isdir(path):
        problem = "not a folder" if os.path.exists(path) else "no such folder"
        what = ("a folder of class folders (or train/ and test/ folders of class folders)"
                if config.format == "folders" else
                "a folder of images named <class>_<number> (data.prefix_pattern)")
        raise DataError(f"{path}: {problem}; expected {what}")
    root = path
    top = _subfolders(path)
    if config.format == "prefix" and "train" not in top:
        has_images = any(n.lower().endswith(IMAGE_EXTENSIONS) for n in os.listdir(path))
        inner = next((n for n in _IMAGE_FOLDERS if n in top), None)
        if not has_images and inner:
            path = os.path.join(path, inner)
            top = _subfolders(path)
    annotations = _annotation_folder(root, config.annotations)
    ann_names = set(ANNOTATION_FOLDERS)
    scan = _Scan(root, "", "", [], [], [], [], {}, annotations, {})
    eval_name = next((n for n in _EVAL_FOLDERS if n in top), "") if "train" in top else ""
    if "train" in top:
        scan.layout = f"train+{eval_name}" if eval_name else "train"
        scan.eval_source = eval_name
        scan.ignored_folders += [_rel(os.path.join(path, n), root) for n in top
                                 if n not in ("train", eval_name) and n not in ann_names]
        parts = [(os.path.join(path, "train"), "train")]
        if eval_name:
            parts.append((os.path.join(path, eval_name), "eval"))
    else:
        scan.layout = "class-folders" if config.format == "folders" else "flat"
        parts = [(path, "train")]
    pattern = re.compile(config.prefix_pattern)
    for folder, origin in parts:
        if config.format == "folders":
            _scan_class_folders(folder, origin, root, config, scan)
        else:
            _scan_flat(folder, origin, root, pattern, scan)
    if annotations is not None:
        for c in scan.candidates:
            c.annotation = find_annotation(c.path, annotations or None)
            if c.annotation:
                scan.annotation_files[_rel(c.annotation, root)] = c.annotation
    return scan


def _image_or_bad(file: str, root: str, scan: _Scan) -> bool:
    """Whether ``file`` is an image by name; other files are bad, except XML files (VOC
    annotations beside the images, used or not)."""
    name = os.path.basename(file)
    if name.lower().endswith(IMAGE_EXTENSIONS):
        return True
    if name.lower().endswith(".xml"):
        if scan.annotations is None:
            scan.ignored_files.append(_rel(file, root))
        return False
    scan.bad.append((file, _rel(file, root), f"{file}: not an image file; {_EXPECTED} "
                                             "(.jpg, .jpeg, .png or .bmp)"))
    return False


def _scan_class_folders(folder: str, origin: str, root: str, config: DataConfig,
                        scan: _Scan) -> None:
    names = [n for n in _subfolders(folder) if n not in ANNOTATION_FOLDERS]
    scan.ignored_files += [_rel(f, root) for f in _files(folder, recursive=False)]
    if not names:
        raise DataError(f"{folder}: no class folders; expected one folder per class holding "
                        "JPEG, PNG or BMP images (e.g. ok/ and defect/), or train/ and test/ "
                        "folders of them")
    for name in names:
        class_folder = os.path.join(folder, name)
        scan.class_folders[(name, origin)] = class_folder
        files = _files(class_folder, recursive=True)
        if config.classes and name not in config.classes:
            scan.ignored_folders.append(_rel(class_folder, root))
            continue
        for file in files:
            if _image_or_bad(file, root, scan):
                scan.candidates.append(_Candidate(_rel(file, root), file, name, origin,
                                                  _number(os.path.basename(file))))


def _scan_flat(folder: str, origin: str, root: str, pattern: re.Pattern, scan: _Scan) -> None:
    scan.ignored_folders += [_rel(os.path.join(folder, n), root) for n in _subfolders(folder)
                             if n not in ANNOTATION_FOLDERS]
    files = _files(folder, recursive=False)
    for file in files:
        if not _image_or_bad(file, root, scan):
            continue
        name = os.path.basename(file)
        class_name = _class_from_name(pattern, name)
        if class_name is None:
            scan.bad.append((file, _rel(file, root),
                             f"{file}: the file name does not match data.prefix_pattern "
                             f"{pattern.pattern!r}; expected <class>_<number> names such as "
                             "crazing_12.jpg"))
            continue
        scan.candidates.append(_Candidate(_rel(file, root), file, class_name, origin,
                                          _number(name)))
    if not any(c.origin == origin for c in scan.candidates) and not scan.bad:
        raise DataError(f"{folder}: no images; expected JPEG, PNG or BMP files named "
                        f"<class>_<number> (data.prefix_pattern {pattern.pattern!r})")


# --------------------------------------------------------------------------------------
# Validated records


@dataclass
class _Record:
    """One validated image."""

    source: str
    path: str
    class_name: str
    origin: str
    index: int | None
    size: int
    crc: int
    boxes: list[float]  # fractions, [xmin, ymin, xmax, ymax] * n
    box_fraction: float
    defect_size: str
    label: int = -1
    is_defect: int = 0


class _Problems:
    """Bad files: raised at once, or with skip_bad_files recorded and reported."""

    def __init__(self, skip: bool, progress: Progress | None):
        self.skip, self.progress = skip, progress
        self.skipped: list[tuple[str, str]] = []

    def bad(self, path: str, rel: str, message: str) -> None:
        examples_io.skip_or_raise(DataError(message), path, rel, self.skip, self.skipped,
                                  self.progress)


def _validate(scan: _Scan, config: DataConfig, problems: _Problems,
              progress: Progress | None) -> tuple[list[_Record], dict]:
    """Decodes every candidate once and reads its boxes; returns the records and what the
    summary says about images and annotations."""
    records: list[_Record] = []
    formats, modes = Counter(), Counter()
    sizes: list[tuple[int, int]] = []
    mismatches: list[list[str]] = []
    annotated = 0
    n_boxes = 0
    total = len(scan.candidates)
    for number, c in enumerate(scan.candidates, start=1):
        try:
            with open(c.path, "rb") as f:
                data = f.read()
            info = check_image_bytes(c.path, data)
        except OSError as e:
            problems.bad(c.path, c.rel, f"{c.path}: cannot read the file ({e}); {_EXPECTED}")
            continue
        except DataError as e:
            problems.bad(c.path, c.rel, str(e))
            continue
        boxes: list[Box] = []
        has_annotation = False
        if c.annotation:
            try:
                every = read_voc(c.annotation, (info["width"], info["height"]))
                has_annotation = True
            except DataError as e:
                problems.bad(c.annotation, _rel(c.annotation, scan.root), str(e))
                every = []
            for box in every:
                if box.name == c.class_name:
                    boxes.append(box)
                else:
                    mismatches.append([c.rel, box.name, c.class_name])
        annotated += has_annotation
        n_boxes += len(boxes)
        flat = [v for b in boxes for v in (b.xmin, b.ymin, b.xmax, b.ymax)]
        fraction = float(boxes_mask(flat, 100, 100).mean()) if flat else 0.0
        records.append(_Record(c.rel, c.path, c.class_name, c.origin, c.index, len(data),
                               zlib.crc32(data), flat, fraction,
                               defect_size(fraction, bool(flat))))
        formats[info["format"]] += 1
        modes[info["mode"]] += 1
        sizes.append((info["width"], info["height"]))
        if progress and (number % _PROGRESS_EVERY == 0 or number == total):
            progress(f"validated {number}/{total} images")
    if mismatches and progress:
        files = len({m[0] for m in mismatches})
        progress(f"{len(mismatches)} VOC box(es) in {files} file(s) are labelled with another "
                 "class than their image: reported in summary.json (box_label_mismatches), "
                 "not used")
    widths, heights = ([s[0] for s in sizes], [s[1] for s in sizes]) if sizes else ([0], [0])
    info = {
        "image_formats": dict(sorted(formats.items())),
        "image_modes": dict(sorted(modes.items())),
        "image_sizes": {"min": [min(widths), min(heights)], "max": [max(widths), max(heights)]},
        "annotations": {
            "folder": (scan.annotations if scan.annotations else
                       "beside the images" if scan.annotations == "" else None),
            "annotated_images": annotated, "boxes": n_boxes,
            "box_label_mismatches": mismatches,
        },
    }
    return records, info


# --------------------------------------------------------------------------------------
# Classes and splits


def resolve_classes(found: Sequence[str], config: DataConfig, mode: str,
                    where: str) -> tuple[list[str], list[str]]:
    """(classes in label order, good-part classes) for the classes found in the data."""
    found = sorted(set(found))
    if config.classes:
        missing = [c for c in config.classes if c not in found]
        if missing:
            raise DataError(f"{where}: no images of class(es) {missing} (data.classes); found "
                            f"classes {found}")
        classes = list(config.classes)
    else:
        classes = found
    if config.good_classes:
        unknown = [c for c in config.good_classes if c not in classes]
        if unknown:
            raise DataError(f"data.good_classes: {unknown} not among the classes found in "
                            f"{where}: {classes}")
        good = list(config.good_classes)
    else:
        good = [c for c in classes if re.match(GOOD_CLASS_PATTERN, c)]
    if mode == "classify" and len(classes) < 2:
        raise DataError(f"{where}: found {len(classes)} class(es) {classes}; classify mode "
                        "expects at least two")
    if mode == "anomaly":
        if not good:
            raise DataError(f"data.good_classes: anomaly mode needs a class of good parts to "
                            f"learn, and none was given; none of the classes found in {where} "
                            f"{classes} is named ok*, good*, normal* or pass* (set "
                            "--good-classes NAME)")
        if len(good) == len(classes):
            raise DataError(f"{where}: every class {classes} is a good-part class "
                            "(data.good_classes); anomaly mode expects defect images too, to "
                            "measure the model on (AUROC, recall)")
    return classes, good


def _order(seed: int, name: str) -> str:
    return hashlib.sha256(f"{seed}\0{name}".encode()).hexdigest()


def _carve(records: Sequence[_Record], pool: Sequence[int], fraction: float, seed: int,
           keep_one: bool) -> set[int]:
    """The held-out indices of ``pool``: per class, ``fraction`` of its images (rounded, at
    least one when the class has three or more), in hash order; ``keep_one`` leaves every
    class at least one image."""
    if fraction <= 0.0:
        return set()
    held: set[int] = set()
    by_class: dict[str, list[int]] = {}
    for i in pool:
        by_class.setdefault(records[i].class_name, []).append(i)
    for members in by_class.values():
        members = sorted(members, key=lambda i: (_order(seed, records[i].source),
                                                 records[i].source))
        n = len(members)
        k = int(round(fraction * n))
        if n >= 3:
            k = max(k, 1)
        if keep_one:
            k = min(k, n - 1)
        held.update(members[:k])
    return held


def _plan(records: Sequence[_Record], config: DataConfig, mode: str, has_eval: bool,
          where: str) -> tuple[dict[str, list[int]], str]:
    """Record indices per split (each in a seeded shuffled order) and how eval was chosen."""
    everything = list(range(len(records)))
    if has_eval:
        evals = [i for i in everything if records[i].origin == "eval"]
        rule = "folder"
    elif config.eval_indices is not None:
        first, last = config.eval_indices
        evals = [i for i in everything
                 if records[i].index is not None and first <= records[i].index <= last]
        rule = f"eval_indices {first}-{last}"
        if not evals:
            raise DataError(f"data.eval_indices {[first, last]}: no image of {where} is "
                            "numbered in that range; expected file names with numbers "
                            "(e.g. crazing_201.jpg)")
    else:
        evals = sorted(_carve(records, everything, config.eval_fraction, config.split_seed,
                              keep_one=True))
        rule = f"stratified {config.eval_fraction:g} of each class"
    eval_set = set(evals)
    pool = [i for i in everything if i not in eval_set]
    if mode == "anomaly":
        goods = [i for i in pool if not records[i].is_defect]
        held = _carve(records, goods, config.validation_fraction, config.split_seed + 1,
                      keep_one=True)
        splits = {"train": [i for i in goods if i not in held],
                  "validation": [i for i in pool if i in held or records[i].is_defect],
                  "eval": evals}
    else:
        held = _carve(records, pool, config.validation_fraction, config.split_seed + 1,
                      keep_one=True)
        splits = {"train": [i for i in pool if i not in held],
                  "validation": [i for i in pool if i in held], "eval": evals}
    _check_splits(records, splits, mode, where)
    for number, split in enumerate(SPLITS):
        order = sorted(splits[split], key=lambda i: records[i].source)
        rng = np.random.default_rng([config.split_seed, number])
        splits[split] = [order[k] for k in rng.permutation(len(order))]
    return splits, rule


def _check_splits(records: Sequence[_Record], splits: dict[str, list[int]], mode: str,
                  where: str) -> None:
    if not splits["eval"]:
        raise DataError(f"{where}: the eval split is empty; expected images to evaluate on "
                        "(a test/ folder, data.eval_indices or data.eval_fraction > 0)")
    train_classes = {records[i].class_name for i in splits["train"]}
    if mode == "classify":
        missing = sorted({r.class_name for r in records} - train_classes)
        if missing:
            raise DataError(f"{where}: class(es) {missing} have no training images (only "
                            "eval ones); expected images of every class outside the eval "
                            "split")
        return
    if not splits["train"]:
        raise DataError(f"{where}: no good-part images left for training after holding out "
                        "eval and validation; expected more images of data.good_classes")
    if not any(not records[i].is_defect for i in splits["validation"]):
        raise DataError(f"{where}: no good-part images in the validation split, where anomaly "
                        "mode chooses its threshold; expected data.validation_fraction > 0 "
                        "and at least 3 good-part images outside the eval split")
    kinds = {records[i].is_defect for i in splits["eval"]}
    if kinds != {0, 1}:
        lacking = "good-part" if 0 not in kinds else "defect"
        raise DataError(f"{where}: the eval split holds no {lacking} images; anomaly mode "
                        "measures AUROC, recall and false alarms on both")


# --------------------------------------------------------------------------------------
# Ingest


def _settings(config: DataConfig, mode: str) -> dict:
    fields = dataclasses.asdict(config)
    if config.format == "folders":
        fields.pop("prefix_pattern")
    return {"format_version": _FORMAT_VERSION, "mode": mode, "config": fields}


def _summary(records: Sequence[_Record], splits: dict[str, list[int]], classes: list[str],
             good: list[str], config: DataConfig, mode: str, scan: _Scan, rule: str,
             skipped: list[tuple[str, str]], info: dict, ignored_classes: dict) -> dict:
    class_counts = {s: {c: 0 for c in classes} for s in SPLITS}
    for split in SPLITS:
        for i in splits[split]:
            class_counts[split][records[i].class_name] += 1
    sizes = {s: dict(sorted(Counter(records[i].defect_size for i in splits[s]).items()))
             for s in SPLITS}
    summary = {
        "format_version": _FORMAT_VERSION,
        "format": config.format,
        "mode": mode,
        "source": os.path.basename(os.path.normpath(scan.root)),
        "layout": scan.layout,
        "eval_source": f"{scan.eval_source}/" if scan.eval_source else rule,
        "classes": classes,
        "good_classes": good,
        "images": len(records),
        "class_counts": class_counts,
        "defect_sizes": sizes,
        "config": dataclasses.asdict(config),
        "skipped": [list(s) for s in skipped],
        "ignored_files": scan.ignored_files,
        "ignored_folders": scan.ignored_folders,
        "ignored_classes": ignored_classes,
        **info,
    }
    return json.loads(json.dumps(summary))  # as read back from summary.json (no tuples)


def _examples(records: Sequence[_Record], order: Sequence[int]) -> Iterator[bytes]:
    for i in order:
        r = records[i]
        with open(r.path, "rb") as f:
            data = f.read()
        if len(data) != r.size or zlib.crc32(data) != r.crc:
            raise DataError(f"{r.path}: the file changed during ingestion; expected it "
                            "unchanged between validation and writing")
        yield image_example(data, label=r.label, class_name=r.class_name,
                            is_defect=r.is_defect, source=r.source, boxes=r.boxes,
                            box_fraction=r.box_fraction, defect_size=r.defect_size)


def ingest(path: str, config: DataConfig, out_root: str, progress: Progress | None = None,
           *, mode: str = "classify") -> examples_io.IngestResult:
    """Validates every image (and VOC file), splits, then writes train/, validation/ and
    eval/ TFRecords under ``out_root/<fingerprint>`` with a ``summary.json``; a finished
    folder for the same inputs and settings is returned untouched."""
    check_data(config)
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {list(MODES)}, got {mode!r}")
    scan = _scan(path, config)
    problems = _Problems(config.skip_bad_files, progress)
    if not config.skip_bad_files and scan.bad:
        raise DataError(scan.bad[0][2])

    @contextlib.contextmanager
    def produce():
        if progress:
            progress(f"found {len(scan.candidates)} images in {path} (layout {scan.layout}, "
                     f"{len(scan.annotation_files)} VOC files)")
        for file, rel, message in scan.bad:
            problems.bad(file, rel, message)
        records, info = _validate(scan, config, problems, progress)
        for (name, origin), folder in sorted(scan.class_folders.items()):
            if config.classes and name not in config.classes:
                continue
            if not any(r.class_name == name and r.origin == origin for r in records):
                rel = _rel(folder, scan.root)
                skipped = sum(1 for s in problems.skipped if s[0].startswith(rel + "/"))
                what = (f"no readable images ({skipped} bad file(s) skipped)" if skipped
                        else "empty class folder")
                problems.bad(folder, rel, f"{folder}: {what}; expected JPEG, PNG or BMP "
                                          f"images of class {name!r}")
        found = [r.class_name for r in records]
        if not records:
            raise DataError(f"{path}: no readable images ({len(problems.skipped)} bad files "
                            f"skipped); {_EXPECTED}")
        classes, good = resolve_classes(found, config, mode, path)
        ignored_classes = dict(sorted(Counter(r.class_name for r in records
                                              if r.class_name not in classes).items()))
        records = [r for r in records if r.class_name in classes]
        if config.use_indices is not None:
            first, last = config.use_indices
            records = [r for r in records
                       if r.index is not None and first <= r.index <= last]
            if not records:
                raise DataError(f"data.use_indices {[first, last]}: no image of {path} is "
                                "numbered in that range")
        for r in records:
            r.label = classes.index(r.class_name)
            r.is_defect = int(r.class_name not in good)
        splits, rule = _plan(records, config, mode, bool(scan.eval_source), path)
        summary = _summary(records, splits, classes, good, config, mode, scan, rule,
                           problems.skipped, info, ignored_classes)
        yield {s: _examples(records, splits[s]) for s in SPLITS}, summary

    files = [(c.rel, c.path) for c in scan.candidates]
    files += list(scan.annotation_files.items())
    fingerprint = examples_io.content_fingerprint(_settings(config, mode), files)
    return examples_io.ingest_once(out_root, fingerprint, produce, progress)


# --------------------------------------------------------------------------------------
# Synthetic surfaces


def synthetic_surface(rng: np.random.Generator, size: int) -> np.ndarray:
    """float [size, size] in about [0, 255]: a brushed-metal texture (fine streaks along a
    random axis, grain and a slow shading) at a random brightness."""
    from scipy.ndimage import gaussian_filter  # noqa: PLC0415

    streak_sigma = (0.6, size / 10) if rng.random() < 0.5 else (size / 10, 0.6)
    streaks = gaussian_filter(rng.normal(0.0, 1.0, (size, size)), streak_sigma)
    streaks /= streaks.std() + 1e-9
    shading = gaussian_filter(rng.normal(0.0, 1.0, (size, size)), size / 4)
    shading /= shading.std() + 1e-9
    grain = rng.normal(0.0, 1.0, (size, size))
    base = rng.uniform(110.0, 150.0)
    return base + 12.0 * streaks + 8.0 * shading + 5.0 * grain


def draw_defect(rng: np.random.Generator, image: np.ndarray, kind: str
                ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """``image`` with a defect drawn in, and its box (xmin, ymin, xmax, ymax; pixels,
    inclusive). ``kind``: "scratch" (a thin dark or bright line) or "spot" (a dark blob)."""
    from PIL import ImageDraw, ImageFilter  # noqa: PLC0415

    size = image.shape[0]
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    if kind == "scratch":
        length = rng.uniform(0.3, 0.55) * size
        angle = rng.uniform(0.0, np.pi)
        cx, cy = rng.uniform(0.3, 0.7, 2) * size
        dx, dy = np.cos(angle) * length / 2, np.sin(angle) * length / 2
        draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=255,
                  width=max(1, round(size / 40)))
        amount = rng.choice([-1.0, 1.0]) * rng.uniform(55.0, 80.0)
    elif kind == "spot":
        r = rng.uniform(0.05, 0.1) * size
        cx, cy = rng.uniform(0.2, 0.8, 2) * size
        ratio = rng.uniform(0.6, 1.0)
        draw.ellipse([cx - r, cy - r * ratio, cx + r, cy + r * ratio], fill=255)
        amount = -rng.uniform(60.0, 90.0)
    else:
        raise ValueError(f"kind: expected 'scratch' or 'spot', got {kind!r}")
    mask = np.asarray(canvas.filter(ImageFilter.GaussianBlur(max(0.5, size / 100))),
                      np.float32) / 255.0
    rows, cols = np.nonzero(mask > 0.1)
    box = (int(cols.min()) + 1, int(rows.min()) + 1, int(cols.max()) + 1, int(rows.max()) + 1)
    return image + amount * mask, box


def _voc(filename: str, size: int, channels: int, label: str,
         boxes: Sequence[tuple[int, int, int, int]]) -> str:
    objects = "".join(
        f"  <object>\n    <name>{label}</name>\n    <pose>Unspecified</pose>\n"
        f"    <truncated>0</truncated>\n    <difficult>0</difficult>\n    <bndbox>\n"
        f"      <xmin>{x0}</xmin>\n      <ymin>{y0}</ymin>\n      <xmax>{x1}</xmax>\n"
        f"      <ymax>{y1}</ymax>\n    </bndbox>\n  </object>\n" for x0, y0, x1, y1 in boxes)
    return (f"<annotation>\n  <folder>images</folder>\n  <filename>{filename}</filename>\n"
            f"  <size>\n    <width>{size}</width>\n    <height>{size}</height>\n"
            f"    <depth>{channels}</depth>\n  </size>\n  <segmented>0</segmented>\n"
            f"{objects}</annotation>\n")


def encode_image(array: np.ndarray, extension: str) -> bytes:
    """uint8 [H, W] or [H, W, 3] pixels as the bytes of a .png, .jpg or .bmp file."""
    kind = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP"}[extension.lower()]
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(
        buffer, format=kind, **({"quality": 95} if kind == "JPEG" else {}))
    return buffer.getvalue()


def synthetic_image(rng: np.random.Generator, size: int, kind: str, rgb: bool = False
                    ) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """uint8 pixels of one generated part and its defect boxes: ``kind`` "ok" (a clean
    surface), "scratch" or "spot"."""
    image = synthetic_surface(rng, size)
    boxes = []
    if kind != "ok":
        image, box = draw_defect(rng, image, kind)
        boxes.append(box)
    pixels = np.clip(image, 0, 255).astype(np.uint8)
    if rgb:  # a warm tint: colour images that convert back to the same gray levels
        tint = np.array([1.06, 1.0, 0.86])
        pixels = np.clip(pixels[..., None] * tint, 0, 255).astype(np.uint8)
    return pixels, boxes


def generate_synthetic(path: str, fmt: str = "folders", *,
                       classes: Sequence[str] = ("ok", "scratch", "spot"),
                       n_per_class: int = 30, size: int = 64, seed: int = 0,
                       layout: str = "flat", voc: bool = True, rgb: bool = False,
                       extensions: Sequence[str] = (".png",)) -> str:
    """Writes generated surface images; returns what to pass to ``ingest``.

    Brushed-metal textures at random brightness; a class named like "ok"/"good" is clean,
    a class whose name contains "spot" gets a dark blob, any other class a thin scratch
    (e.g. the casting layout's "def_front"); images are numbered from 1 per class.
    ``fmt`` "folders": ``path/<class>/<class>_<i>``
    (``layout`` "train_test": under ``path/train/`` and, a quarter as many, ``path/test/``);
    "prefix": ``path/images/<class>_<i>`` (returned; with "train_test": ``path/train/`` and
    ``path/test/``). ``voc``: a Pascal VOC file per
    defect image in ``path/annotations/``. File types cycle through ``extensions``.
    Deterministic for a seed.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt: expected one of {list(FORMATS)}, got {fmt!r}")
    if layout not in ("flat", "train_test"):
        raise ValueError(f"layout: expected 'flat' or 'train_test', got {layout!r}")
    bad = [e for e in extensions if e.lower() not in IMAGE_EXTENSIONS]
    if bad or not extensions:
        raise ValueError(f"extensions: expected some of {list(IMAGE_EXTENSIONS)}, got "
                         f"{list(extensions)}")
    rng = np.random.default_rng(seed)
    parts = [("train", n_per_class)]
    if layout == "train_test":
        parts.append(("test", max(2, n_per_class // 4)))
    numbers: Counter = Counter()  # per class, continuing from train/ into test/
    for part, n in parts:
        for class_name in classes:
            if re.match(GOOD_CLASS_PATTERN, class_name):
                kind = "ok"
            else:
                kind = "spot" if "spot" in class_name.lower() else "scratch"
            if fmt == "folders":
                folder = os.path.join(path, *([part] if layout == "train_test" else []),
                                      class_name)
            else:
                folder = os.path.join(path, part if layout == "train_test" else "images")
            os.makedirs(folder, exist_ok=True)
            for _ in range(n):
                numbers[class_name] += 1
                number = numbers[class_name]
                extension = extensions[number % len(extensions)]
                pixels, boxes = synthetic_image(rng, size, kind, rgb)
                name = f"{class_name}_{number}{extension}"
                with open(os.path.join(folder, name), "wb") as f:
                    f.write(encode_image(pixels, extension))
                if voc and boxes:
                    ann = os.path.join(path, "annotations")
                    os.makedirs(ann, exist_ok=True)
                    with open(os.path.join(ann, f"{class_name}_{number}.xml"), "w") as f:
                        f.write(_voc(name, size, 3 if rgb else 1, class_name, boxes))
    if fmt == "prefix" and layout == "flat":
        return os.path.join(path, "images")
    return path
