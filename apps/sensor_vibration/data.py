"""Raw vibration recordings -> validated signals -> windowed tf.Examples in TFRecord files.

The raw layout is the one of the CWRU 12 kHz drive-end benchmark: a folder with a
``manifest.csv`` (one row per recording: file, label, motor load, rpm, ...) and one MATLAB
``.mat`` file per recording (keys ``X118_DE_time``, ``X118_FE_time``, ``X118RPM``), or CSV
files with one column per accelerometer channel.

Everything is read and validated before anything is written, so a bad file fails fast with
a ``DataError`` whose message starts with the offending path. Windows are cut inside
contiguous time blocks of each recording (or whole motor loads are held out), so no eval
window shares a sample with a train window. ``ingest`` writes the examples once per content
fingerprint and never rewrites a finished folder: TFX's ImportExampleGen fingerprints its
input files by mtime, and rewriting identical data would defeat pipeline caching.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import re
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from apps.sensor_vibration.config import CWRU_CLASSES, DataConfig, check_data
from apps.sensor_vibration.features import SIGNAL, SPLITS
from suite import examples_io

# Bumped whenever the example encoding or the split rules change, so that old example
# folders are not reused for data they no longer describe.
_FORMAT_VERSION = 1
# Seed of the train shuffle; fixed so that identical inputs give identical files.
_SHUFFLE_SEED = 0
MANIFEST_COLUMNS: tuple[str, ...] = (
    "file", "cwru_file_number", "class10", "fault_type", "fault_diameter_in",
    "load_hp", "rpm", "de_key", "n_samples",
)
_CHANNEL_NAMES = {"DE": "drive-end", "FE": "fan-end", "BA": "base"}


class DataError(ValueError):
    """Bad input data or layout; the message starts with the offending file path."""


@dataclass(frozen=True)
class Recording:
    """One validated recording: its signal and its manifest metadata."""

    path: str  # absolute path of the .mat/.csv file
    label: str  # class name from the manifest
    label_id: int  # index in config.classes
    load: int  # motor load (HP)
    rpm: int
    signal: np.ndarray  # float32 [n_samples, n_channels] in config.channels order
    # File name relative to the data folder (what the examples record as source_file);
    # empty means the base name of ``path``.
    source_file: str = ""


# --------------------------------------------------------------------------------------
# Manifest


@dataclass(frozen=True)
class _Row:
    line: int
    fields: dict[str, str]
    path: str
    label: str
    label_id: int
    load: int
    rpm: int
    file_number: str | None


def _manifest_path(data_dir: str, config: DataConfig) -> str:
    return os.path.join(data_dir, config.manifest)


def _parse_int(manifest: str, line: int, column: str, value: str) -> int:
    text = value.strip()
    try:
        return int(text)
    except ValueError:
        pass
    # Spreadsheets like to write integers as "1.0"; accept those, nothing fractional.
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if np.isfinite(number) and number.is_integer():
        return int(number)
    raise DataError(
        f"{manifest}: line {line}: column {column!r} must be an integer, got {value!r}")


def _read_manifest_rows(data_dir: str, config: DataConfig) -> list[_Row]:
    manifest = _manifest_path(data_dir, config)
    if not os.path.isdir(data_dir):
        raise DataError(f"{data_dir}: expected a data folder holding {config.manifest}, "
                        "got no such folder")
    if not os.path.isfile(manifest):
        raise DataError(f"{manifest}: expected a manifest CSV, got no such file")
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{manifest}: expected a header row, got an empty file")
            header = [h.strip() for h in header]
            required = ("file", config.label_column, "load_hp", "rpm")
            missing = [c for c in required if c not in header]
            if missing:
                raise DataError(f"{manifest}: missing required column(s) {missing}; "
                                f"expected at least {list(required)}, got {header}")
            raw_rows = [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{manifest}: cannot read manifest: {e}") from e

    rows: list[_Row] = []
    seen: dict[tuple[str, str | None], int] = {}
    for line, values in raw_rows:
        if len(values) != len(header):
            raise DataError(f"{manifest}: line {line}: expected {len(header)} fields, "
                            f"got {len(values)}")
        fields = {h: v.strip() for h, v in zip(header, values, strict=True)}
        name = fields["file"]
        if not name:
            raise DataError(f"{manifest}: line {line}: empty 'file' field")
        path = os.path.abspath(os.path.join(data_dir, name))
        if not os.path.isfile(path):
            raise DataError(f"{manifest}: line {line}: file {name!r} not found "
                            f"(expected {path})")
        label = fields[config.label_column]
        if label not in config.classes:
            raise DataError(f"{manifest}: line {line}: unknown label {label!r} in column "
                            f"{config.label_column!r}; expected one of {list(config.classes)}")
        load = _parse_int(manifest, line, "load_hp", fields["load_hp"])
        rpm = _parse_int(manifest, line, "rpm", fields["rpm"])
        number = fields.get("cwru_file_number", "") or None
        if number is not None:
            number = str(_parse_int(manifest, line, "cwru_file_number", number))
        # The same recording twice would put copies of one signal into the data set.
        key = (os.path.normcase(path), number)
        if key in seen:
            raise DataError(f"{manifest}: line {line}: file {name!r} is already listed on "
                            f"line {seen[key]}")
        seen[key] = line
        rows.append(_Row(line, fields, path, label, config.classes.index(label), load, rpm,
                         number))
    if not rows:
        raise DataError(f"{manifest}: expected at least one recording row, got none")
    return rows


# --------------------------------------------------------------------------------------
# Signal readers


def _channel_desc(channel: str) -> str:
    name = _CHANNEL_NAMES.get(channel)
    return f"{name} ({channel})" if name else repr(channel)


def _finite_float32(path: str, signal: np.ndarray, channels: Sequence[str]) -> np.ndarray:
    # Checked after the cast: float64 values beyond float32 range become inf.
    signal = np.ascontiguousarray(signal, dtype=np.float32)
    bad = ~np.isfinite(signal)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(f"{path}: expected finite samples, got {int(bad.sum())} NaN/inf "
                        f"value(s), first at sample {int(row)} of channel {channels[col]!r}")
    return signal


def _mat4_header(head: bytes) -> int | None:
    """The MOPT type code of a MATLAB 4 file's first matrix header, or None when the bytes
    cannot start one (type codes are below 5000 and their digits bounded)."""
    if len(head) < 20:
        return None
    for order in ("<", ">"):
        mopt = int.from_bytes(head[:4], "little" if order == "<" else "big")
        if mopt < 5000 and mopt % 10 <= 2 and (mopt // 10) % 10 <= 5:
            return mopt
    return None


def read_mat_signal(path: str, channels: Sequence[str],
                    file_number: str | None = None) -> np.ndarray:
    """Reads a CWRU-style .mat file; returns float32 [n_samples, len(channels)].

    Channel ``DE`` is the key ``X<nnn>_DE_time``. A file may hold several recordings
    (X098_* and X099_*): ``file_number`` picks one; without it there must be exactly one.
    Channels of different lengths are truncated to the shortest.
    """
    import scipy.io  # noqa: PLC0415 (only the .mat path needs scipy)

    if not channels:
        raise DataError(f"{path}: expected at least one channel, got none")
    try:
        with open(path, "rb") as f:
            head = f.read(128)
    except OSError as e:
        raise DataError(f"{path}: cannot read the file ({e}); expected a MATLAB .mat file") \
            from e
    # MATLAB 5 / 7 files open with a text header; version 4 files have none, and scipy
    # recognises them by their first bytes.
    if head[:6] != b"MATLAB" and _mat4_header(head) is None:
        raise DataError(f"{path}: not a MATLAB file (expected a MATLAB 5 .mat file, as the "
                        f"CWRU data uses; the file starts with {head[:16]!r})")
    try:
        mat = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises many types (MatReadError, ValueError, OSError...)
        raise DataError(f"{path}: truncated or damaged MATLAB file ({type(e).__name__}: {e}); "
                        "expected a complete .mat file") from e
    keys = sorted(k for k in mat if not k.startswith("__"))

    try:
        number = None if file_number is None else f"{int(file_number):03d}"
    except ValueError:
        raise DataError(f"{path}: expected an integer file number, got {file_number!r}") from None
    columns = []
    for channel in channels:
        pattern = re.compile(rf"X(\d+)_{re.escape(channel)}_time")
        candidates = [k for k in keys if pattern.fullmatch(k)]
        if number is None:
            if len(candidates) > 1:
                raise DataError(f"{path}: expected one recording, got several candidate "
                                f"keys {candidates}; set cwru_file_number in the manifest")
            if candidates:
                # Every later channel must come from the same recording.
                number = pattern.fullmatch(candidates[0]).group(1)
        key = None if number is None else f"X{number}_{channel}_time"
        if key is None or key not in mat:
            like = key or f"X<nnn>_{channel}_time"
            raise DataError(f"{path}: no {_channel_desc(channel)} channel: expected a key "
                            f"like {like}, found keys {keys}")
        values = np.asarray(mat[key])
        if values.ndim == 2 and 1 in values.shape:
            values = values.reshape(-1)
        if values.ndim != 1 or values.dtype.kind not in "iuf":
            raise DataError(f"{path}: key {key}: expected a numeric vector, got "
                            f"{values.dtype} array of shape {values.shape}")
        columns.append(values)
    n = min(len(c) for c in columns)
    signal = np.stack([c[:n] for c in columns], axis=1)
    return _finite_float32(path, signal, channels)


def _scan_csv_for_error(path: str, indices: Sequence[int], names: Sequence[str]) -> None:
    """Raises a DataError at the first line the fast parser choked on."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        next(reader, None)
        for row in reader:
            if not row or not any(c.strip() for c in row):
                continue
            for i, name in zip(indices, names, strict=True):
                if i >= len(row):
                    raise DataError(f"{path}: line {reader.line_num}, column {name!r}: "
                                    f"expected a number, got a missing value")
                try:
                    float(row[i])
                except ValueError:
                    raise DataError(f"{path}: line {reader.line_num}, column {name!r}: "
                                    f"expected a number, got {row[i]!r}") from None


def read_csv_signal(path: str, channels: Sequence[str]) -> np.ndarray:
    """Reads a CSV with a header naming the channels; returns float32 [n, len(channels)].

    Other columns (e.g. ``time``) are ignored.
    """
    if not channels:
        raise DataError(f"{path}: expected at least one channel, got none")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), None)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read CSV file: {e}") from e
    if header is None:
        raise DataError(f"{path}: expected a header row naming the channels {list(channels)}, "
                        "got an empty file")
    header = [h.strip() for h in header]
    missing = [c for c in channels if c not in header]
    if missing:
        raise DataError(f"{path}: expected a column named {missing[0]!r} (channels "
                        f"{list(channels)}), got header {header}")
    indices = [header.index(c) for c in channels]
    try:
        # Fast C parser; only when it fails do we walk the file to locate the bad cell.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data" on header-only files
            signal = np.loadtxt(path, delimiter=",", skiprows=1, usecols=indices,
                                dtype=np.float64, ndmin=2, encoding="utf-8-sig")
    except (ValueError, IndexError) as e:
        _scan_csv_for_error(path, indices, channels)
        raise DataError(f"{path}: cannot parse CSV: {e}") from e
    return _finite_float32(path, signal.reshape(-1, len(channels)), channels)


# --------------------------------------------------------------------------------------
# Recordings and splits


def _check_config(config: DataConfig) -> None:
    """config.check_data's rules, as a DataError (the error of bad input to this module)."""
    try:
        check_data(config)
    except ValueError as e:
        raise DataError(str(e)) from None


def load_recordings(data_dir: str, config: DataConfig,
                    progress: Callable[[str], None] | None = None) -> list[Recording]:
    """Reads and validates the manifest and every recording it names.

    Everything is read before returning, so errors surface before training or writing.
    """
    _check_config(config)
    rows = _read_manifest_rows(data_dir, config)
    root = os.path.abspath(data_dir)
    recordings = []
    for i, row in enumerate(rows, 1):
        if config.format == "mat":
            signal = read_mat_signal(row.path, config.channels, row.file_number)
        else:
            signal = read_csv_signal(row.path, config.channels)
        if len(signal) < config.window:
            raise DataError(f"{row.path}: expected at least one window of {config.window} "
                            f"samples, got a signal of {len(signal)} samples")
        recordings.append(Recording(
            path=row.path, label=row.label, label_id=row.label_id, load=row.load,
            rpm=row.rpm, signal=signal,
            source_file=os.path.relpath(row.path, root).replace(os.sep, "/")))
        if progress and (i == len(rows) or i % max(1, len(rows) // 5) == 0):
            progress(f"read {i}/{len(rows)} recordings")
    return recordings


def split_windows(rec: Recording, config: DataConfig) -> dict[str, list[int]]:
    """Returns the window start offsets of one recording per split.

    The recording is cut into ``split_blocks`` contiguous blocks; windows never cross a
    block boundary. The last block is eval, or with ``holdout_load`` the whole recording
    is eval when its load is the held-out one and train otherwise.
    """
    _check_config(config)
    n, blocks, window = len(rec.signal), config.split_blocks, config.window
    splits: dict[str, list[int]] = {s: [] for s in SPLITS}
    for b in range(blocks):
        start, end = b * n // blocks, (b + 1) * n // blocks
        if end - start < window:
            raise DataError(
                f"{rec.path}: block of {end - start} samples ({n} samples cut into "
                f"{blocks} split_blocks) is shorter than the window of {window} samples; "
                "use fewer split_blocks or a shorter window")
        if config.holdout_load is not None:
            split = "eval" if rec.load == config.holdout_load else "train"
        else:
            split = "eval" if b == blocks - 1 else "train"
        splits[split].extend(range(start, end - window + 1, config.stride))
    cap = config.max_windows_per_file
    if cap is not None:
        for split, starts in splits.items():
            if len(starts) > cap:
                # Evenly spaced so the kept windows still cover every block.
                keep = np.linspace(0, len(starts) - 1, cap).round().astype(int)
                splits[split] = [starts[k] for k in keep]
    return splits


def _plan(recordings: Sequence[Recording],
          config: DataConfig) -> dict[str, list[tuple[int, int]]]:
    """(recording index, window start) per split, after the whole-dataset checks."""
    if not recordings:
        raise DataError("recordings: expected at least one recording, got none")
    if config.holdout_load is not None:
        loads = sorted({r.load for r in recordings})
        if config.holdout_load not in loads:
            raise DataError(f"{os.path.dirname(recordings[0].path)}: holdout_load="
                            f"{config.holdout_load} is not present; loads found: {loads}")
    plan: dict[str, list[tuple[int, int]]] = {s: [] for s in SPLITS}
    for i, rec in enumerate(recordings):
        for split, starts in split_windows(rec, config).items():
            plan[split].extend((i, s) for s in starts)
    for split, items in plan.items():
        if not items:
            why = ("every load is the holdout load" if config.holdout_load is not None
                   and split == "train" else
                   "split_blocks=1 leaves no block for train" if config.split_blocks == 1
                   else "no windows")
            raise DataError(f"{os.path.dirname(recordings[0].path)}: the {split} split is "
                            f"empty ({why}); check split_blocks, holdout_load and the data")
    return plan


def _serialize(rec: Recording, start: int, window: int) -> bytes:
    import tensorflow as tf  # noqa: PLC0415 (reading and validating need no TensorFlow)

    signal = rec.signal[start:start + window].reshape(-1)  # time-major, channels interleaved
    source = rec.source_file or os.path.basename(rec.path)
    feature = {
        "signal": tf.train.Feature(float_list=tf.train.FloatList(value=signal.tolist())),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[rec.label_id])),
        "label_name": tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[rec.label.encode()])),
        "load": tf.train.Feature(int64_list=tf.train.Int64List(value=[rec.load])),
        "rpm": tf.train.Feature(int64_list=tf.train.Int64List(value=[rec.rpm])),
        "source_file": tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[examples_io.utf8(source)])),
        "window_start": tf.train.Feature(int64_list=tf.train.Int64List(value=[start])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def window_examples(recordings: Sequence[Recording], config: DataConfig) -> dict[str, list[bytes]]:
    """Returns serialized tf.Examples per split, in recording then time order."""
    plan = _plan(recordings, config)
    return {split: [_serialize(recordings[i], s, config.window) for i, s in items]
            for split, items in plan.items()}


# --------------------------------------------------------------------------------------
# Ingest


def _fingerprint(data_dir: str, config: DataConfig, rows: Sequence[_Row]) -> str:
    # Content hashes (not mtimes or absolute paths) so a copied data folder maps to the
    # same examples.
    root = os.path.abspath(data_dir)
    files = {("manifest", _manifest_path(data_dir, config))}
    files |= {(os.path.relpath(r.path, root).replace(os.sep, "/"), r.path) for r in rows}
    return examples_io.content_fingerprint(
        {"format_version": _FORMAT_VERSION, "config": dataclasses.asdict(config)}, files)


def ingest(data_dir: str, config: DataConfig, out_root: str,
           progress: Callable[[str], None] | None = None) -> examples_io.IngestResult:
    """Validates all data, then writes train/ and eval/ TFRecords under out_root/<fingerprint>
    (see ``suite.examples_io``): the same inputs and settings map to the same, untouched
    folder. The summary records the windows of each class per split."""
    _check_config(config)
    rows = _read_manifest_rows(data_dir, config)

    def produce():
        recordings = load_recordings(data_dir, config, progress)
        plan = _plan(recordings, config)  # raises on empty splits before anything is written
        # Recording order would give class-sorted batches; shuffle the train file once.
        perm = np.random.default_rng(_SHUFFLE_SEED).permutation(len(plan["train"]))
        plan["train"] = [plan["train"][k] for k in perm]
        class_counts = {}
        for split in SPLITS:
            per_class = Counter(recordings[i].label for i, _ in plan[split])
            class_counts[split] = {c: per_class.get(c, 0) for c in config.classes}
        examples_io.check_class_coverage(
            class_counts, _manifest_path(data_dir, config),
            allow_missing=config.allow_missing_classes, progress=progress)
        summary = {"format_version": _FORMAT_VERSION, "class_counts": class_counts,
                   "recordings": len(recordings), "config": dataclasses.asdict(config)}
        splits = {split: (_serialize(recordings[i], start, config.window)
                          for i, start in plan[split]) for split in SPLITS}
        return examples_io.produced(splits, summary)

    return examples_io.ingest_once(out_root, _fingerprint(data_dir, config, rows), produce,
                                   progress)


# --------------------------------------------------------------------------------------
# Synthetic CWRU-like data

_LOAD_RPM = {0: 1797, 1: 1772, 2: 1750, 3: 1730}
# Characteristic fault frequencies of the CWRU drive-end bearing (SKF 6205) in multiples
# of the shaft rate.
_FAULT_ORDERS = {"OR": 3.585, "IR": 5.415, "B": 2.357}
_CAGE_ORDER = 0.398
_RESONANCE_HZ = {"OR": 3000.0, "IR": 3400.0, "B": 2600.0}
_MAT_HEADER = b"MATLAB 5.0 MAT-file, synthetic CWRU-like data (apps.sensor_vibration)".ljust(116)
_FAULT_TYPE = {"Normal": "Normal", "B": "Ball", "IR": "InnerRace", "OR": "OuterRace"}
# First CWRU file number of each class (load 0); loads 1..3 follow consecutively.
_CWRU_FIRST_NUMBER = {"Normal": 97, "B007": 118, "B014": 185, "B021": 222, "IR007": 105,
                      "IR014": 169, "IR021": 209, "OR007": 130, "OR014": 197, "OR021": 234}


def _parse_class(name: str) -> tuple[str, float | None]:
    """Class name -> (fault kind Normal/B/IR/OR, fault diameter in inches)."""
    m = re.fullmatch(r"(Normal|IR|OR|B)(\d*)(@\d+)?", name, re.IGNORECASE)
    if not m:
        raise ValueError(f"cannot derive a fault type from class {name!r}; expected a name "
                         "starting with Normal, B, IR or OR")
    kind = {k.upper(): k for k in _FAULT_TYPE}[m.group(1).upper()]
    if kind == "Normal":
        return kind, None
    return kind, (int(m.group(2)) / 1000.0 if m.group(2) else 0.007)


def _synthetic_de(rng: np.random.Generator, kind: str, size_in: float | None, load: int,
                  rpm: int, n: int, fs: int) -> np.ndarray:
    """Drive-end acceleration (g): shaft harmonics + noise + fault impulse responses."""
    t = np.arange(n) / fs
    shaft_hz = rpm / 60.0
    harmonics = np.arange(1, 6)[:, None]
    amps = 0.03 / harmonics * rng.uniform(0.7, 1.3, (5, 1))
    phases = rng.uniform(0, 2 * np.pi, (5, 1))
    x = (amps * np.sin(2 * np.pi * harmonics * shaft_hz * t + phases)).sum(axis=0)
    x += rng.normal(0.0, 0.06, n)
    if kind == "Normal":
        return x

    period = 1.0 / (_FAULT_ORDERS[kind] * shaft_hz)
    count = int(n / fs / period) + 2
    # 1-2 % random slip between impacts, as in real rolling bearings.
    times = (np.arange(count) + rng.uniform(0, 1)) * period
    times += rng.normal(0.0, 0.015 * period, count)
    amp = 0.35 * (size_in / 0.007) ** 0.7 * (1.0 + 0.05 * load)
    spread = 0.5 if kind == "B" else 0.3
    amps = amp * rng.lognormal(0.0, spread, count)
    if kind == "IR":  # the defect rotates through the load zone once per revolution
        amps *= 0.55 + 0.45 * np.cos(2 * np.pi * shaft_hz * times + rng.uniform(0, 2 * np.pi))
    elif kind == "B":  # the ball travels with the cage
        amps *= 0.6 + 0.4 * np.cos(2 * np.pi * _CAGE_ORDER * shaft_hz * times
                                   + rng.uniform(0, 2 * np.pi))
    idx = np.round(times * fs).astype(int)
    keep = (idx >= 0) & (idx < n)
    impulses = np.zeros(n)
    np.add.at(impulses, idx[keep], amps[keep])

    # Larger defects ring at other frequencies (as the CWRU spectra show), not only louder.
    size_factor = 0.8 * 1.25 ** ((size_in - 0.007) / 0.007)
    resonance = min(_RESONANCE_HZ[kind] * size_factor * rng.uniform(0.98, 1.02), 0.4 * fs)
    decay_s = 0.001
    kt = np.arange(int(6 * decay_s * fs) + 1) / fs
    kernel = np.exp(-kt / decay_s) * np.sin(2 * np.pi * resonance * kt + np.pi / 2)
    return x + np.convolve(impulses, kernel)[:n]


def _weaker_copy(rng: np.random.Generator, de: np.ndarray, gain: float, pole: float,
                 noise: float) -> np.ndarray:
    """A sensor further from the bearing: attenuated, low-pass filtered, own noise."""
    # One-pole low-pass y[n] = (1-p) x[n] + p y[n-1] as a truncated FIR (p**k < 1e-6);
    # avoids importing scipy.signal, which costs seconds.
    taps = (1.0 - pole) * pole ** np.arange(int(np.log(1e-6) / np.log(pole)) + 1)
    return gain * np.convolve(de, taps)[:len(de)] + rng.normal(0.0, noise, len(de))


def generate_synthetic(out_dir: str, *, fmt: str = "mat",
                       classes: Sequence[str] = CWRU_CLASSES,
                       loads: Sequence[int] = (0, 1, 2), n_samples: int = 12000,
                       channels: Sequence[str] = ("DE", "FE"), sample_rate_hz: int = 12000,
                       seed: int = 0) -> str:
    """Writes CWRU-like recordings (one per class x load) and manifest.csv; returns out_dir.

    Faults are impulse trains at the bearing's characteristic frequency exciting a
    decaying structural resonance, louder for larger faults; deterministic for a seed.
    """
    import scipy.io  # noqa: PLC0415

    if fmt not in ("mat", "csv"):
        raise ValueError(f"fmt must be 'mat' or 'csv', got {fmt!r}")
    unknown = [c for c in channels if c not in _CHANNEL_NAMES]
    if unknown or not channels:
        raise ValueError(f"channels must be a non-empty subset of {list(_CHANNEL_NAMES)}, "
                         f"got {list(channels)}")
    os.makedirs(out_dir, exist_ok=True)
    used: set[int] = set()
    next_free = 300
    rows = []
    for cls in classes:
        kind, size_in = _parse_class(cls)
        for load in loads:
            number = _CWRU_FIRST_NUMBER.get(cls, -1) + load
            if cls not in _CWRU_FIRST_NUMBER or not 0 <= load <= 3 or number in used:
                while next_free in used:
                    next_free += 1
                number = next_free
            used.add(number)
            rpm = _LOAD_RPM.get(load, max(1797 - 22 * load, 600))
            # Seeded per (class, load) so one file does not depend on which others exist.
            rng = np.random.default_rng([seed, zlib.crc32(cls.encode()), abs(load)])
            de = _synthetic_de(rng, kind, size_in, load, rpm, n_samples, sample_rate_hz)
            signals = {"DE": de,
                       "FE": _weaker_copy(rng, de, 0.4, 0.6, 0.02),
                       "BA": _weaker_copy(rng, de, 0.25, 0.8, 0.02)}
            stem = (f"normal_{load}_{number}" if kind == "Normal"
                    else f"12k_Drive_End_{cls}_{load}_{number}")
            key = f"X{number:03d}"
            if fmt == "mat":
                name = stem + ".mat"
                content: dict[str, Any] = {f"{key}_{c}_time": signals[c].reshape(-1, 1)
                                           for c in channels}
                content[f"{key}RPM"] = np.array([[rpm]], dtype=np.uint16)
                buf_mat = io.BytesIO()
                scipy.io.savemat(buf_mat, content)
                raw = bytearray(buf_mat.getvalue())
                # The 116-byte text header carries a creation time; a fixed one keeps the
                # files byte-identical for a seed, hence the same ingest fingerprint.
                raw[:116] = _MAT_HEADER
                with open(os.path.join(out_dir, name), "wb") as f:
                    f.write(raw)
            else:
                name = stem + ".csv"
                data = np.stack([signals[c] for c in channels], axis=1)
                buf = io.StringIO()
                np.savetxt(buf, data, delimiter=",", fmt="%.9g",
                           header=",".join(channels), comments="")
                with open(os.path.join(out_dir, name), "w") as f:
                    f.write(buf.getvalue())
            rows.append({
                "file": name, "cwru_file_number": number, "class10": cls,
                "fault_type": _FAULT_TYPE[kind],
                "fault_diameter_in": "" if size_in is None else f"{size_in:.3f}",
                "load_hp": load, "rpm": rpm,
                "de_key": f"{key}_DE_time" if fmt == "mat" else "DE",
                "n_samples": n_samples,
            })
    with open(os.path.join(out_dir, "manifest.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return out_dir


def signal_windows(signal: np.ndarray, window: int, where: str = "signal") -> list[np.ndarray]:
    """Consecutive, non-overlapping windows of one recording (what predict classifies)."""
    if len(signal) < window:
        raise DataError(f"{where}: a signal of {len(signal)} samples is shorter than one "
                        f"window ({window} samples)")
    return [signal[s:s + window] for s in range(0, len(signal) - window + 1, window)]


def signal_examples(signal: np.ndarray, config: DataConfig, where: str = "signal") -> list[bytes]:
    """``signal_windows`` as serialized serving requests (the ``signal`` feature only: what a
    client sends to the deployed model)."""
    import tensorflow as tf  # noqa: PLC0415

    return [tf.train.Example(features=tf.train.Features(feature={
        SIGNAL: tf.train.Feature(float_list=tf.train.FloatList(
            value=w.reshape(-1).tolist()))})).SerializeToString()
        for w in signal_windows(signal, config.window, where)]
