"""Raw WAV clips -> tf.Examples holding 16-bit PCM WAV bytes, split without speaker leakage.

Layouts (``DataConfig.format``):
- ``fsdd``: the Free Spoken Digit Dataset: a flat folder of ``{label}_{speaker}_{index}.wav``
  (8 kHz mono 16-bit), or its repository root holding ``recordings/``;
- ``speech-commands``: ``<word>/<speaker>_nohash_<n>.wav`` (16 kHz), with
  ``testing_list.txt`` and ``validation_list.txt`` honoured when present, and an optional
  ``_background_noise_/`` folder of noise recordings mixed into training clips;
- ``folders``: any folder of class folders of WAV files (speaker from the file name, see
  ``DataConfig.speaker_pattern``); list files and ``_background_noise_/`` as above.

Every clip is read by ``apps.speech.wav`` (8/16/24/32-bit integer PCM, 32/64-bit float,
A-law, mu-law; any channel count and a rate of 8 .. 48 kHz), mixed down to mono, resampled to
the preset's rate and stored as 16-bit PCM mono WAV bytes (what the served graph decodes,
as the medical app stores PNG): the examples hold encoded audio, never features. Padding or
cropping to the preset's length happens in the transform graph, so a served model takes
clips of any length. Everything is read and validated before anything is written: a bad
file raises a ``DataError`` naming it and saying what was expected, or with
``skip_bad_files`` is skipped with a progress line and listed in the summary. The examples
land atomically in ``<out_root>/<fingerprint>/`` (``suite.examples_io``).

Splits never put one speaker's recordings of an utterance on both sides: FSDD by recording
index (``eval_indices``; the official test split is 0-4) or one speaker held out entirely
(``holdout_speaker``); data with list files by the lists; otherwise by the Speech Commands
hash of the speaker id. The validation split (early stopping, model choice) is carved from
the training side the same way (FSDD: by recording index), never from eval.

Transcribe mode keeps the digit clips (``DIGIT_WORDS``: "0".."9", "zero".."nine"): training
clips as single-digit examples (the trainer builds strings from them every epoch), and the
validation and eval splits as strings of digits synthesised from their own clips only
(``apps.speech.strings``).
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

from apps.speech import strings, wav
from apps.speech.config import (
    DIGIT_WORDS, DIGITS, FORMATS, DataConfig, SpeechConfig, check_data, parse_indices)
from apps.speech.features import (
    AUDIO, LABEL, LABEL_NAME, N_DIGITS, NOISE_SPLIT, SOURCE_FILE, SPEAKER, SPLITS, TRANSCRIPT)
from suite import examples_io

# Bumped whenever the example encoding or the split rules change.
_FORMAT_VERSION = 1
NOISE_FOLDER = "_background_noise_"
LIST_FILES = {"eval": "testing_list.txt", "validation": "validation_list.txt"}
GENERATED_NOISE = "(generated white noise)"
_FSDD_NAME = re.compile(r"^([^_]+)_([^_]+)_(\d+)\.wav$", re.IGNORECASE)
_NOHASH = re.compile(r"^(.+?)_nohash_(\d+)\.wav$", re.IGNORECASE)
_JUNK = frozenset({"thumbs.db", "desktop.ini", ".ds_store"})
_PROGRESS_EVERY = 500
# The Speech Commands partition hash (its README's which_set).
_MAX_NUM_WAVS_PER_CLASS = 2 ** 27 - 1

Progress = Callable[[str], None]


class DataError(wav.AudioError):
    """Bad input data or layout; the message starts with the offending path and says what
    was expected."""


# --------------------------------------------------------------------------------------
# Scanning


@dataclass
class _Clip:
    """An input file found in the data folder, before validation."""

    rel: str  # relative to the data folder, "/" separated
    path: str
    word: str  # the class (folder) name or FSDD label, before keyword mapping
    speaker: str
    index: int | None = None  # FSDD recording index
    listed: str = ""  # "eval" / "validation" when a list file names the clip


@dataclass
class _Scan:
    """What a data folder holds."""

    root: str
    layout: str
    clips: list[_Clip]
    noise: list[_Clip]
    lists: dict[str, str]  # split -> list file path
    ignored: list[str]
    bad: list[tuple[str, str, str]]  # (path, rel, message) found while scanning
    list_absent: dict[str, int]  # list file -> entries naming absent clips (subset)


def _is_junk(name: str) -> bool:
    return name.startswith(".") or name.lower() in _JUNK


def _rel(path: str, root: str) -> str:
    return os.path.relpath(path, root).replace(os.sep, "/")


def _is_wav_name(name: str) -> bool:
    return name.lower().endswith(".wav")


def _require_folder(path: str, what: str) -> None:
    if not os.path.isdir(path):
        problem = "not a folder" if os.path.exists(path) else "no such folder"
        raise DataError(f"{path}: {problem}; expected {what}")


def _scan_fsdd(path: str) -> _Scan:
    _require_folder(path, "an FSDD recordings folder of {label}_{speaker}_{index}.wav files")
    root = path
    names = sorted(os.listdir(root))
    if not any(_is_wav_name(n) for n in names) and os.path.isdir(os.path.join(root,
                                                                              "recordings")):
        root = os.path.join(root, "recordings")  # the repository root
        names = sorted(os.listdir(root))
    scan = _Scan(root, "fsdd", [], [], {}, [], [], {})
    for name in names:
        full = os.path.join(root, name)
        if _is_junk(name):
            continue
        if not os.path.isfile(full) or not _is_wav_name(name):
            scan.ignored.append(name)
            continue
        match = _FSDD_NAME.match(name)
        if not match:
            scan.bad.append((full, name, f"{full}: file name does not follow the FSDD "
                                         "pattern; expected {label}_{speaker}_{index}.wav, "
                                         "e.g. 7_jackson_32.wav"))
            continue
        scan.clips.append(_Clip(name, full, match.group(1), match.group(2),
                                int(match.group(3))))
    if not scan.clips and not scan.bad:
        raise DataError(f"{root}: no WAV files; expected an FSDD recordings folder of "
                        "{label}_{speaker}_{index}.wav files")
    return scan


def _speaker_of(name: str, pattern: str) -> str:
    match = re.search(pattern, name)
    if match and match.group(1):
        return match.group(1)
    return os.path.splitext(name)[0]  # unknown speaker: the file is its own group


def _scan_classes(path: str, config: DataConfig, progress: Progress | None) -> _Scan:
    """speech-commands and folders: class folders (+ lists, + background noise)."""
    kind = ("a Speech Commands folder of <word>/<speaker>_nohash_<n>.wav"
            if config.format == "speech-commands" else "a folder of class folders of WAV files")
    _require_folder(path, kind)
    scan = _Scan(path, config.format, [], [], {}, [], [], {})
    folders = []
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if _is_junk(name):
            continue
        if os.path.isdir(full):
            folders.append(name)
        elif name in LIST_FILES.values():
            split = next(s for s, f in LIST_FILES.items() if f == name)
            scan.lists[split] = full
        else:
            scan.ignored.append(name)
    if NOISE_FOLDER in folders:
        folders.remove(NOISE_FOLDER)
        noise_dir = os.path.join(path, NOISE_FOLDER)
        for name in sorted(os.listdir(noise_dir)):
            full = os.path.join(noise_dir, name)
            if _is_junk(name) or not os.path.isfile(full):
                continue
            if _is_wav_name(name):
                scan.noise.append(_Clip(f"{NOISE_FOLDER}/{name}", full, "", ""))
            else:
                scan.ignored.append(f"{NOISE_FOLDER}/{name}")
    if not folders:
        raise DataError(f"{path}: no class folders; expected {kind}")
    missing = [k for k in (config.keywords or config.classes)
               if k not in folders and k != config.unknown_label]
    if missing:
        field_name = "keywords" if config.keywords else "classes"
        raise DataError(f"{os.path.join(path, missing[0])}: missing class folder; expected "
                        f"one folder per word of data.{field_name} "
                        f"{list(config.keywords or config.classes)}, found {folders}")
    for word in folders:
        folder = os.path.join(path, word)
        files = []
        for current, dirs, names in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not _is_junk(d))
            files += [os.path.join(current, n) for n in sorted(names) if not _is_junk(n)]
        wavs = [f for f in files if _is_wav_name(f)]
        for f in files:
            if not _is_wav_name(f):
                scan.bad.append((f, _rel(f, path), f"{f}: not a WAV file name; expected "
                                                   f"only .wav clips in class folder {word}/"))
        if not wavs:
            message = f"{folder}: empty class folder; expected WAV clips of {word!r}"
            if not config.skip_bad_files or word in config.classes or word in config.keywords:
                raise DataError(message)
            scan.bad.append((folder, f"{word}/", message))
            continue
        for f in wavs:
            name = os.path.basename(f)
            if config.format == "speech-commands":
                match = _NOHASH.match(name)
                speaker = match.group(1) if match else os.path.splitext(name)[0]
            else:
                speaker = _speaker_of(name, config.speaker_pattern)
            scan.clips.append(_Clip(_rel(f, path), f, word, speaker))
    _apply_lists(scan, config, progress)
    return scan


def _apply_lists(scan: _Scan, config: DataConfig, progress: Progress | None) -> None:
    """Marks the clips named by testing_list.txt / validation_list.txt."""
    by_rel = {c.rel: c for c in scan.clips}
    for split, list_path in sorted(scan.lists.items()):
        list_name = os.path.basename(list_path)
        absent = 0
        try:
            with open(list_path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"{list_path}: cannot read the list ({e}); expected one clip "
                            "path per line, e.g. yes/0a7c2a8d_nohash_0.wav") from e
        for number, line in enumerate(lines, start=1):
            rel = line.strip().replace("\\", "/")
            if not rel:
                continue
            clip = by_rel.get(rel)
            if clip is None:
                if rel.split("/")[0] == NOISE_FOLDER:
                    continue
                if config.subset:
                    absent += 1
                    continue
                scan.bad.append((list_path, f"{list_name}:{number}",
                                 f"{list_path}: line {number} names clip {rel!r}, which is not "
                                 f"in {scan.root}; expected every listed clip to exist (pass "
                                 "--subset when the folder is a sample of the data set its "
                                 "lists describe)"))
                continue
            if clip.listed and clip.listed != split:
                raise DataError(f"{list_path}: line {number} names clip {rel!r}, which "
                                f"{LIST_FILES[clip.listed]} names too; expected each clip in "
                                "one list at most")
            clip.listed = split
        if absent:
            scan.list_absent[list_name] = absent
            if progress:
                progress(f"{list_name}: {absent} listed clip(s) are not in this sample of the "
                         "data set (--subset)")


def scan(path: str, config: DataConfig, progress: Progress | None = None) -> _Scan:
    """The clips, lists and noise recordings of a data folder in ``config.format``."""
    if config.format == "fsdd":
        return _scan_fsdd(path)
    return _scan_classes(path, config, progress)


# --------------------------------------------------------------------------------------
# Validation


@dataclass
class _Record:
    """One validated clip and where its converted bytes are."""

    rel: str
    word: str
    speaker: str
    index: int | None
    listed: str
    offset: int
    size: int
    duration_ms: float
    source_rate: int
    encoding: str


def _validate(clips: Sequence[_Clip], config: DataConfig, spool,
              skipped: list[tuple[str, str]], progress: Progress | None,
              what: str = "clips") -> list[_Record]:
    """Reads every clip once, converts it to 16-bit mono WAV at the preset's rate into
    ``spool``; bad ones raise or are skipped."""
    records = []
    for number, c in enumerate(clips, start=1):
        try:
            try:
                with open(c.path, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise DataError(f"{c.path}: cannot read the file ({e}); expected a WAV "
                                "file") from e
            clip, info = wav.to_clip(data, config.sample_rate_hz, c.path,
                                     min_peak_dbfs=config.min_peak_dbfs)
        except wav.AudioError as e:
            examples_io.skip_or_raise(e, c.path, c.rel, config.skip_bad_files, skipped,
                                      progress)
            continue
        encoded = wav.wav16_bytes(clip, config.sample_rate_hz)
        offset = spool.seek(0, os.SEEK_END)
        spool.write(encoded)
        records.append(_Record(c.rel, c.word, c.speaker, c.index, c.listed, offset,
                               len(encoded), 1000.0 * info.frames / info.sample_rate,
                               info.sample_rate, info.encoding))
        if progress and (number % _PROGRESS_EVERY == 0 or number == len(clips)):
            progress(f"validated {number}/{len(clips)} {what}")
    return records


def _read_spool(spool, record: _Record) -> bytes:
    spool.seek(record.offset)
    return spool.read(record.size)


# --------------------------------------------------------------------------------------
# Splits


def _which_set_hash(speaker: str) -> float:
    """The Speech Commands partition value in [0, 100] of a speaker (or group) id."""
    digest = hashlib.sha1(speaker.encode()).hexdigest()
    return (int(digest, 16) % (_MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / _MAX_NUM_WAVS_PER_CLASS)


def _hash_order(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _carve_indices(indices: Sequence[int], percent: float) -> set[int]:
    """``percent`` of the recording indices (at least one when any and percent > 0, never
    all), in the order of a hash of the index."""
    indices = sorted(set(indices))
    if percent <= 0 or len(indices) < 2:
        return set()
    n = min(len(indices) - 1, max(1, round(len(indices) * percent / 100.0)))
    return set(sorted(indices, key=lambda i: _hash_order(f"index:{i}"))[:n])


def _plan(records: Sequence[_Record], config: DataConfig, where: str,
          has_lists: dict[str, bool]) -> tuple[dict[str, list[int]], str]:
    """Record indices per split (train, validation, eval) and how eval was chosen."""
    splits: dict[str, list[int]] = {"train": [], "validation": [], "eval": []}
    if config.format == "fsdd":
        found = sorted({r.index for r in records})
        speakers = sorted({r.speaker for r in records})
        if config.holdout_speaker:
            if config.holdout_speaker not in speakers:
                raise DataError(f"{where}: --holdout-speaker {config.holdout_speaker!r} has no "
                                f"recordings; expected one of {speakers}")
            is_eval = [r.speaker == config.holdout_speaker for r in records]
            how = f"speaker {config.holdout_speaker} held out"
        else:
            eval_set = parse_indices(config.eval_indices, "data.eval_indices")
            is_eval = [r.index in eval_set for r in records]
            how = f"recording indices {config.eval_indices}"
            if not any(is_eval):
                raise DataError(f"{where}: no recording has an index in {config.eval_indices!r} "
                                f"(indices found: {_ranges(found)}); expected --eval-indices "
                                "naming indices present, or --holdout-speaker NAME")
        rest = [r.index for r, e in zip(records, is_eval, strict=True) if not e]
        validation = (parse_indices(config.validation_indices, "data.validation_indices")
                      if config.validation_indices
                      else _carve_indices(rest, config.validation_percent))
        for i, (r, e) in enumerate(zip(records, is_eval, strict=True)):
            split = "eval" if e else "validation" if r.index in validation else "train"
            splits[split].append(i)
        return splits, how
    hows = []
    for split in ("eval", "validation"):
        hows.append(LIST_FILES[split] if has_lists.get(split)
                    else f"{split}: {getattr(config, f'{split}_percent'):g}% of speakers by hash")
    carve = [s for s in ("validation", "eval") if not has_lists.get(s)]
    # A speaker named by a list is on that list's side with all their clips (the lists of
    # Speech Commands come from the same speaker hash; eval wins if a speaker is in both).
    side: dict[str, str] = {}
    for r in sorted(records, key=lambda r: r.listed != "eval"):
        if r.listed:
            side.setdefault(r.speaker, r.listed)
    speakers = sorted({r.speaker for r in records} - set(side), key=_which_set_hash)
    listed_side = dict(side)
    for speaker in speakers:
        value = _which_set_hash(speaker)
        if "validation" in carve and value < config.validation_percent:
            side[speaker] = "validation"
        elif "eval" in carve and (config.validation_percent <= value
                                  < config.validation_percent + config.eval_percent):
            side[speaker] = "eval"
        else:
            side[speaker] = "train"
    needed = {"train", *carve}
    if needed - set(side.values()) and len(speakers) >= len(needed):
        # Too few speakers for the hash thresholds to fill every split: whole speakers by
        # rank of the same hash, at least one each (still no speaker on two sides).
        counts = {s: max(1, round(len(speakers) * getattr(config, f"{s}_percent") / 100.0))
                  for s in carve}
        while sum(counts.values()) > len(speakers) - 1:
            largest = max(counts, key=counts.get)
            counts[largest] -= 1
        order = iter(speakers)
        side = {**listed_side, **{sp: "train" for sp in speakers}}
        for split in carve:
            for _ in range(counts[split]):
                side[next(order)] = split
        hows.append("too few speakers for the hash thresholds: whole speakers by hash rank")
    for i, r in enumerate(records):
        splits[r.listed or side[r.speaker]].append(i)
    return splits, "; ".join(hows)


def _check_splits(splits: dict[str, list[int]], records: Sequence[_Record], how: str,
                  where: str) -> None:
    """Every split must hold clips (an empty split would also break the schema the pipeline
    infers from every split's statistics)."""
    speakers = len({r.speaker for r in records})
    for split in ("train", "validation", "eval"):
        if not splits[split]:
            raise DataError(
                f"{where}: the {split} split is empty ({len(records)} clips of {speakers} "
                f"speaker(s); {how}); expected clips on every side: more speakers or "
                f"recordings, or other data.eval_indices / validation_indices / "
                f"validation_percent / holdout_speaker")


def _ranges(values: Sequence[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5"."""
    out, values = [], sorted(values)
    for v in values:
        if out and v == out[-1][1] + 1:
            out[-1][1] = v
        else:
            out.append([v, v])
    return ",".join(f"{a}-{b}" if b > a else f"{a}" for a, b in out)


# --------------------------------------------------------------------------------------
# Examples


def _bytes_feature(values: Sequence[bytes]):
    import tensorflow as tf  # noqa: PLC0415

    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _int_feature(value: int):
    import tensorflow as tf  # noqa: PLC0415

    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def clip_example(audio: bytes, *, label: int | None = None, label_name: str = "",
                 transcript: str | None = None, speaker: str = "", source: str = "",
                 mode: str = "keywords") -> bytes:
    """A serialized tf.train.Example: the WAV bytes and, for training data, the label (and
    its name) or the transcript, the speaker and the source file; with neither label nor
    transcript only the audio (a serving request)."""
    import tensorflow as tf  # noqa: PLC0415

    feature = {AUDIO: _bytes_feature([audio])}
    if label is not None or transcript is not None:
        if mode == "keywords":
            feature[LABEL] = _int_feature(-1 if label is None else label)
            feature[LABEL_NAME] = _bytes_feature([label_name.encode()])
        else:
            feature[TRANSCRIPT] = _bytes_feature([(transcript or "").encode()])
            feature[N_DIGITS] = _int_feature(len(transcript or ""))
        feature[SPEAKER] = _bytes_feature([speaker.encode()])
        feature[SOURCE_FILE] = _bytes_feature([source.encode()])
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def serving_example(audio: bytes) -> bytes:
    """What a client sends: a tf.Example holding WAV bytes only."""
    return clip_example(audio)


# --------------------------------------------------------------------------------------
# Ingest


def _settings(config: SpeechConfig) -> dict:
    data = dataclasses.asdict(config.data)
    settings = {"format_version": _FORMAT_VERSION, "mode": config.mode, "data": data}
    if config.mode == "transcribe":
        t = dataclasses.asdict(config.transcribe)
        for name in ("train_strings", "decoder", "beam_width"):  # the trainer's and model's
            t.pop(name)
        settings["transcribe"] = t
    return settings


def _labels(records: Sequence[_Record], config: SpeechConfig, where: str
            ) -> tuple[list[str | None], tuple[str, ...], dict[str, int]]:
    """Each record's class name (None: not used) and the classes in output order, with the
    count of clips of ignored words."""
    d = config.data
    ignored: Counter[str] = Counter()
    if config.mode == "transcribe":
        names = []
        for r in records:
            digit = DIGIT_WORDS.get(r.word.lower())
            names.append(digit)
            if digit is None:
                ignored[r.word] += 1
        if not any(names):
            raise DataError(f"{where}: no digit clips; transcribe mode expects classes "
                            f"named by digits (0-9) or digit words (zero..nine), found "
                            f"{sorted({r.word for r in records})}")
        return names, DIGITS, dict(ignored)
    if d.keywords:
        names = [r.word if r.word in d.keywords else d.unknown_label for r in records]
        found = [k for k in d.keywords if k in names]
        classes = tuple(found) + ((d.unknown_label,) if d.unknown_label in names else ())
    else:
        names = [r.word for r in records]
        classes = tuple(sorted(set(names)))
    if d.classes:
        unknown = sorted(set(names) - set(d.classes))
        if unknown:
            raise DataError(f"{where}: class(es) {unknown} are not in data.classes "
                            f"{list(d.classes)}; expected only those classes")
        classes = d.classes
    return names, classes, dict(ignored)


def _summary(config: SpeechConfig, scan_: _Scan, records: Sequence[_Record],
             names: Sequence[str | None], classes: Sequence[str], splits: dict[str, list[int]],
             how: str, skipped: list[tuple[str, str]], extra: dict) -> dict:
    class_counts = {s: dict(Counter(names[i] for i in splits[s])) for s in splits}
    speakers = {s: sorted({records[i].speaker for i in splits[s]}) for s in splits}
    longer = sum(r.duration_ms > config.clip_ms for r in records)
    summary = {
        "format_version": _FORMAT_VERSION,
        "format": config.data.format,
        "mode": config.mode,
        "layout": scan_.layout,
        "source": os.path.basename(os.path.normpath(scan_.root)),
        "classes": list(classes),
        "sample_rate_hz": config.data.sample_rate_hz,
        "clip_ms": config.clip_ms,
        "eval_source": how,
        "clips": len(records),
        "clip_counts": {s: len(v) for s, v in splits.items()},
        "class_counts": {s: {c: class_counts[s].get(c, 0) for c in classes} for s in splits},
        "speakers": {s: len(v) for s, v in speakers.items()},
        "eval_speakers": speakers["eval"],
        "speakers_in_train_and_eval": len(set(speakers["train"]) & set(speakers["eval"])),
        "clips_longer_than_clip": longer,
        "source_rates_hz": dict(Counter(str(r.source_rate) for r in records)),
        "source_encodings": dict(Counter(r.encoding for r in records)),
        "duration_ms": {"min": min(r.duration_ms for r in records),
                        "max": max(r.duration_ms for r in records),
                        "mean": float(np.mean([r.duration_ms for r in records]))},
        "list_entries_absent": scan_.list_absent,
        "ignored_files": scan_.ignored,
        "skipped": [list(s) for s in skipped],
    }
    summary.update(extra)
    return json.loads(json.dumps(summary))


def _decode16(data: bytes) -> np.ndarray:
    """The float samples of 16-bit mono WAV bytes written by ``wav.wav16_bytes``."""
    return np.frombuffer(data, dtype="<i2", offset=44).astype(np.float32) / 32768.0


def ingest(path: str, config: SpeechConfig, out_root: str,
           progress: Progress | None = None) -> examples_io.IngestResult:
    """Validates every clip, splits without speaker leakage, then writes train/,
    validation/, eval/ and noise/ TFRecords under ``out_root/<fingerprint>`` with a
    ``summary.json``; a finished folder for the same inputs and settings is returned
    untouched."""
    problems = check_data(config.data)
    if problems:
        raise DataError("; ".join(problems))
    if config.data.format not in FORMATS:
        raise DataError(f"data.format: expected one of {list(FORMATS)}")
    found = scan(path, config.data, progress)
    if found.bad and not config.data.skip_bad_files:
        raise DataError(found.bad[0][2])
    files = [(c.rel, c.path) for c in found.clips + found.noise]
    files += [(os.path.basename(p), p) for p in found.lists.values()]
    fingerprint = examples_io.content_fingerprint(_settings(config), files)

    @contextlib.contextmanager
    def produce():
        skipped: list[tuple[str, str]] = []
        for bad_path, rel, message in found.bad:
            examples_io.skip_or_raise(DataError(message), bad_path, rel,
                                      config.data.skip_bad_files, skipped, progress)
        if progress:
            progress(f"found {len(found.clips)} clips in {found.root} (layout {found.layout}"
                     + (f", {len(found.noise)} background noise recordings" if found.noise
                        else "") + ")")
        with tempfile.TemporaryFile(prefix="speech-") as spool:
            records = _validate(found.clips, config.data, spool, skipped, progress)
            noise = _validate(found.noise, config.data, spool, skipped, progress,
                              "noise recordings")
            if not records:
                raise DataError(f"{found.root}: no readable clips ({len(skipped)} bad files "
                                "skipped); expected WAV clips")
            names, classes, ignored = _labels(records, config, found.root)
            used = [i for i, n in enumerate(names) if n is not None]
            records = [records[i] for i in used]
            names = [names[i] for i in used]
            has_lists = {s: s in found.lists for s in LIST_FILES}
            splits, how = _plan(records, config.data, found.root, has_lists)
            _check_splits(splits, records, how, found.root)
            missing = [c for c in classes
                       if not any(names[i] == c for i in splits["train"])]
            if missing and config.mode == "keywords":
                raise DataError(f"{found.root}: class(es) {missing} have no training clips "
                                f"after holding out eval and validation; expected clips of "
                                "every class on the training side")
            class_id = {c: i for i, c in enumerate(classes)}
            extra = {"noise_recordings": [r.rel for r in noise] or [GENERATED_NOISE],
                     "ignored_words": ignored}
            order = {s: _shuffled(splits[s], records, s) for s in splits}

            def keyword_examples(split: str) -> Iterator[bytes]:
                for i in order[split]:
                    r = records[i]
                    yield clip_example(_read_spool(spool, r), label=class_id[names[i]],
                                       label_name=names[i], speaker=r.speaker, source=r.rel)

            def single_digits(split: str) -> Iterator[bytes]:
                for i in order[split]:
                    r = records[i]
                    yield clip_example(_read_spool(spool, r), transcript=names[i],
                                       speaker=r.speaker, source=r.rel, mode="transcribe")

            def noise_examples() -> Iterator[bytes]:
                # Never an empty split (an empty split's statistics would mark every
                # feature deprecated in the inferred schema): without recordings of its
                # own, the data set gets white noise.
                recorded = [(r.rel, _read_spool(spool, r)) for r in noise]
                for rel, audio in recorded or [(GENERATED_NOISE, _white_noise(
                        config.data.sample_rate_hz))]:
                    if config.mode == "keywords":
                        yield clip_example(audio, label=-1, source=rel)
                    else:
                        yield clip_example(audio, transcript="", source=rel,
                                           mode="transcribe")

            if config.mode == "keywords":
                out = {s: keyword_examples(s) for s in ("train", "validation", "eval")}
            else:
                noises = [_decode16(_read_spool(spool, r)) for r in noise]
                built = {}
                for number, split in enumerate(("validation", "eval"), start=1):
                    built[split] = _strings(
                        spool, records, names, splits[split], config, noises,
                        getattr(config.transcribe, f"{split}_strings"),
                        seed=config.transcribe.seed * 10 + number)
                    if progress:
                        progress(f"built {len(built[split])} {split} digit strings from "
                                 f"{len(splits[split])} {split} clips")
                out = {"train": single_digits("train"),
                       **{s: iter(v) for s, v in built.items()}}
                extra["string_counts"] = {s: len(v) for s, v in built.items()}
            out[NOISE_SPLIT] = noise_examples()
            summary = _summary(config, found, records, names, classes, splits, how, skipped,
                               extra)
            yield {s: out[s] for s in SPLITS}, summary

    return examples_io.ingest_once(out_root, fingerprint, produce, progress)


def _white_noise(sample_rate: int, seconds: float = 10.0) -> bytes:
    """A fixed white-noise recording (16-bit WAV): the noise split of data without any."""
    rng = np.random.default_rng(0)
    return wav.wav16_bytes(np.clip(0.1 * rng.standard_normal(int(seconds * sample_rate)),
                                   -1, 1), sample_rate)


def _shuffled(indices: Sequence[int], records: Sequence[_Record], split: str) -> list[int]:
    """The split's records in a seeded shuffled order (fixed for the same inputs)."""
    ordered = sorted(indices, key=lambda i: records[i].rel)
    rng = np.random.default_rng(zlib.crc32(split.encode()))
    return [ordered[k] for k in rng.permutation(len(ordered))]


def _strings(spool, records: Sequence[_Record], names: Sequence[str | None],
             indices: Sequence[int], config: SpeechConfig, noises: Sequence[np.ndarray],
             n: int, seed: int) -> list[bytes]:
    """Serialized digit-string examples built from the clips ``indices`` only."""
    if not indices:
        return []
    chosen = sorted(indices, key=lambda i: records[i].rel)
    pool = strings.DigitPool([_decode16(_read_spool(spool, records[i])) for i in chosen],
                             [names[i] for i in chosen], [records[i].speaker for i in chosen],
                             [records[i].rel for i in chosen], config.data.sample_rate_hz)
    built = strings.compose_many(pool, config.transcribe, config.clip_samples, n, seed, noises)
    return [clip_example(wav.wav16_bytes(s.audio, config.data.sample_rate_hz),
                         transcript=s.transcript, speaker=s.speaker, source="+".join(s.sources),
                         mode="transcribe")
            for s in built]


# --------------------------------------------------------------------------------------
# Synthetic data


_GENERATED_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
_DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                "nine")


def _frac(x: float) -> float:
    return x - np.floor(x)


def synthetic_word(word: str, speaker: int, rng: np.random.Generator, sample_rate: int,
                   duration_s: float | None = None) -> np.ndarray:
    """A formant-synthesised "word": a harmonic voice whose two formants glide between
    values fixed by the word (the same word sounds alike from every speaker, up to the
    speaker's pitch and vocal-tract length), with a smooth loudness envelope and a little
    noise. float32 in [-1, 1]."""
    k = zlib.crc32(word.encode()) % 1000
    f1 = 300.0 + 500.0 * np.array([_frac(k * 0.618), _frac(k * 0.618 + 0.37)])
    f2 = 1000.0 + 1400.0 * np.array([_frac(k * 0.382 + 0.5), _frac(k * 0.145 + 0.21)])
    tract = 0.92 + 0.16 * _frac(speaker * 0.618)  # speaker's vocal tract length
    pitch = 100.0 + 120.0 * _frac(speaker * 0.382 + 0.1)
    duration = duration_s or rng.uniform(0.28, 0.42)
    n = int(duration * sample_rate)
    t = np.arange(n) / sample_rate
    glide = t / duration
    f0 = pitch * (1.0 + 0.1 * rng.uniform(-1, 1)) * (1.0 + (0.15 if k % 2 else -0.15) * glide)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    formants = [tract * (f[0] + (f[1] - f[0]) * glide) for f in (f1, f2)]
    out = np.zeros(n)
    for h in range(1, int(0.45 * sample_rate / pitch)):
        freq = h * f0
        weight = sum(np.exp(-0.5 * ((freq - fm) / 120.0) ** 2) for fm in formants)
        out += weight * np.sin(h * phase)
    envelope = np.sin(np.pi * np.clip(glide, 0, 1)) ** 0.5
    out *= envelope
    out /= max(1e-9, np.max(np.abs(out)))
    out = out * rng.uniform(0.3, 0.8) + rng.normal(0.0, 0.003, n)
    return out.astype(np.float32)


def generate_synthetic(path: str, fmt: str = "fsdd", *, classes: Sequence[str] | None = None,
                       speakers: int = 4, per_speaker: int = 5, sample_rate: int | None = None,
                       seed: int = 0, lists: bool = True, noise: bool = True,
                       encoding: str = "pcm16", silence_ms: float = 60.0) -> str:
    """Writes learnable synthetic clips (``synthetic_word``) in layout ``fmt``; returns the
    folder to ingest. Deterministic for a seed.

    fsdd: ``path/{label}_{speaker}_{index}.wav`` (default classes the digits, 8 kHz), index
    0 .. per_speaker - 1 per speaker and class. speech-commands: ``path/<word>/<hex
    id>_nohash_<n>.wav`` (default ten command words, 16 kHz), ``testing_list.txt`` and
    ``validation_list.txt`` naming one speaker each (``lists``), and a
    ``_background_noise_/`` folder of two noise recordings (``noise``). folders:
    ``path/<class>/<speaker>_<n>.wav`` and the noise folder. ``encoding``: any of
    ``wav.encode_wav``'s.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt: expected one of {list(FORMATS)}, got {fmt!r}")
    names = list(classes) if classes else list(DIGITS if fmt == "fsdd" else _GENERATED_WORDS)
    rate = sample_rate or (8000 if fmt == "fsdd" else 16000)
    speaker_names = (["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]
                     + [f"speaker{i}" for i in range(6, speakers)])[:speakers] \
        if fmt == "fsdd" else [f"{zlib.crc32(f'{seed}-{i}'.encode()):08x}"
                               for i in range(speakers)]
    os.makedirs(path, exist_ok=True)
    pad = np.zeros(int(silence_ms * rate / 1000), np.float32)
    rows: list[str] = []
    for s, speaker in enumerate(speaker_names):
        for c, name in enumerate(names):
            for i in range(per_speaker):
                rng = np.random.default_rng([seed, s, c, i])
                audio = np.concatenate([pad, synthetic_word(name, s, rng, rate), pad])
                if fmt == "fsdd":
                    rel = f"{name}_{speaker}_{i}.wav"
                elif fmt == "speech-commands":
                    rel = f"{name}/{speaker}_nohash_{i}.wav"
                else:
                    rel = f"{name}/{speaker}_{i}.wav"
                os.makedirs(os.path.dirname(os.path.join(path, rel)), exist_ok=True)
                with open(os.path.join(path, rel), "wb") as f:
                    f.write(wav.encode_wav(audio, rate, encoding))
                rows.append(rel)
    if fmt != "fsdd" and lists and speakers >= 3:
        for split, speaker in (("eval", speaker_names[0]), ("validation", speaker_names[1])):
            with open(os.path.join(path, LIST_FILES[split]), "w") as f:
                f.writelines(r + "\n" for r in rows if f"/{speaker}_" in r)
    if fmt != "fsdd" and noise:
        os.makedirs(os.path.join(path, NOISE_FOLDER), exist_ok=True)
        rng = np.random.default_rng(seed + 1000)
        white = 0.1 * rng.standard_normal(3 * rate)
        brown = np.cumsum(rng.standard_normal(3 * rate))
        brown = 0.2 * (brown - brown.mean()) / np.max(np.abs(brown - brown.mean()))
        for name, x in (("white_noise.wav", white), ("brown_noise.wav", brown)):
            with open(os.path.join(path, NOISE_FOLDER, name), "wb") as f:
                f.write(wav.encode_wav(x.astype(np.float32), rate))
    return path


def digit_names(fmt: str) -> tuple[str, ...]:
    """Class names of the ten digits in a generated layout (FSDD: "0".."9"; else words)."""
    return DIGITS if fmt == "fsdd" else _DIGIT_NAMES
