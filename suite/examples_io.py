"""Ingested examples on disk: content fingerprints, atomic fingerprinted TFRecord folders,
and reading them back.

An app's ingestion validates its raw data, then writes ``<out_root>/<fingerprint>/`` holding
one ``<split>/data.tfrecord`` per split, a ``summary.json`` and, last, ``_SUCCESS``. The
fingerprint hashes file contents and the settings that shape the examples (never mtimes or
absolute paths), so a copied data set maps to the same folder, and a finished folder is
never rewritten: TFX's ImportExampleGen fingerprints its input files by mtime, and
rewriting identical data would defeat pipeline caching. Writing goes to a hidden sibling
that is renamed into place, so a failure leaves nothing half-written.

TensorFlow is imported only by the functions that write or read TFRecords.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from contextlib import AbstractContextManager

from suite.files import glob as glob_files
from typing import Any

SUCCESS = "_SUCCESS"
SUMMARY = "summary.json"
DATA_FILE = "data.tfrecord"


def utf8(text: str) -> bytes:
    """``text`` as UTF-8 for a bytes feature. A file name that is not UTF-8 reaches Python
    with surrogate escapes; those bytes are kept readable (``\\xff``) instead of failing."""
    raw = text.encode("utf-8", "surrogateescape")  # the name's own bytes
    return raw.decode("utf-8", "backslashreplace").encode("utf-8")


def sha256_file(path: str) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def content_fingerprint(settings: Any, files: Iterable[tuple[str, str]]) -> str:
    """16 hex digits over JSON-safe ``settings`` and ``(name, path)`` files' names, sizes and
    contents; ``name`` is what identifies the file in the data set (not its absolute path)."""
    digest = hashlib.sha256()
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for name, path in sorted(files):
        digest.update(json.dumps([name, os.path.getsize(path), sha256_file(path)]).encode())
    return digest.hexdigest()[:16]


def is_complete(folder: str) -> bool:
    """Whether an examples folder was finished (``_SUCCESS`` and its summary present)."""
    return (os.path.isfile(os.path.join(folder, SUCCESS))
            and os.path.isfile(os.path.join(folder, SUMMARY)))


def read_summary(folder: str) -> dict:
    """The ``summary.json`` of a finished examples folder."""
    with open(os.path.join(folder, SUMMARY)) as f:
        return json.load(f)


@dataclass(frozen=True)
class IngestResult:
    """Where an app's ingestion put its examples and what its ``summary.json`` says: the
    per-split ``counts`` and, when bad files were skipped, ``skipped`` as [file, reason]
    pairs, beside whatever the app records (class counts, baselines, ...)."""

    examples_dir: str  # <out_root>/<fingerprint>, one subfolder per split
    summary: dict

    @property
    def counts(self) -> dict[str, int]:
        """Examples per split."""
        return dict(self.summary.get("counts", {}))

    @property
    def fingerprint(self) -> str:
        """The content fingerprint naming the folder."""
        return str(self.summary["fingerprint"])

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """(file, reason) of each bad input file skipped."""
        return [(str(f), str(r)) for f, r in self.summary.get("skipped", [])]

    @classmethod
    def load(cls, folder: str) -> IngestResult:
        """The result of a finished examples folder."""
        return cls(folder, read_summary(folder))


Splits = Mapping[str, Iterable[bytes]]


def check_class_coverage(class_counts: Mapping[str, Mapping[str, int]], where: str, *,
                         allow_missing: bool = False,
                         progress: Callable[[str], None] | None = None) -> None:
    """Every class the model will predict must have examples in every split
    (``class_counts``: split -> class -> examples): a model that never saw a class cannot
    predict it, and an eval split without it cannot show that. Raises a ValueError naming
    the missing classes, unless ``allow_missing`` (then each is reported to ``progress``)."""
    missing = {split: [c for c, n in counts.items() if n == 0]
               for split, counts in class_counts.items()}
    missing = {split: classes for split, classes in missing.items() if classes}
    if not missing:
        return
    text = "; ".join(f"no {split} examples of class(es) {classes}"
                     for split, classes in missing.items())
    if not allow_missing:
        raise ValueError(f"{where}: {text}; every class the model predicts must be in every "
                         "split (check the data and the split settings, or set "
                         "data.allow_missing_classes=true to run anyway)")
    if progress:
        progress(f"warning: {text} (allowed by data.allow_missing_classes)")


def ingest_once(out_root: str, fingerprint: str,
                produce: Callable[[], AbstractContextManager[tuple[Splits, Mapping[str, Any]]]],
                progress: Callable[[str], None] | None = None) -> IngestResult:
    """The examples folder of ``fingerprint``: the finished one untouched, else written.

    ``produce()`` is called only when the folder is missing; it returns a context manager
    giving (serialized examples per split, summary), held open while the examples are
    written (e.g. a spool of converted files).
    """
    final = os.path.join(out_root, fingerprint)
    if is_complete(final):
        if progress:
            progress(f"examples up to date: {final}")
        return IngestResult.load(final)
    with produce() as (splits, summary):
        return write_examples(out_root, fingerprint, splits, summary, progress)


def produced(splits: Splits, summary: Mapping[str, Any]):
    """``ingest_once``'s ``produce`` result for examples that need nothing held open."""
    return contextlib.nullcontext((splits, summary))


def write_examples(out_root: str, fingerprint: str, splits: Splits,
                   summary: Mapping[str, Any],
                   progress: Callable[[str], None] | None = None) -> IngestResult:
    """Writes ``out_root/<fingerprint>/<split>/data.tfrecord`` for each split, atomically.

    ``summary`` (JSON-safe) is stored with ``fingerprint`` and the per-split ``counts``
    added. When another process finishes the same fingerprint first, its folder is kept.
    """
    final = os.path.join(out_root, fingerprint)
    import tensorflow as tf  # noqa: PLC0415 (readers and validation need no TensorFlow)

    os.makedirs(out_root, exist_ok=True)
    tmp = os.path.join(out_root, f".tmp-{fingerprint}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)  # leftover of a dead process with our pid
    try:
        counts: dict[str, int] = {}
        for split, examples in splits.items():
            os.makedirs(os.path.join(tmp, split))
            n = 0
            with tf.io.TFRecordWriter(os.path.join(tmp, split, DATA_FILE)) as writer:
                for example in examples:
                    writer.write(example)
                    n += 1
            counts[split] = n
            if progress:
                progress(f"wrote {split}: {n} examples")
        full = {**summary, "fingerprint": fingerprint, "counts": counts}
        with open(os.path.join(tmp, SUMMARY), "w") as f:
            json.dump(full, f, indent=2, sort_keys=True)
        with open(os.path.join(tmp, SUCCESS), "w"):
            pass  # written last: its presence means the folder is complete
        if os.path.exists(final) and not is_complete(final):
            shutil.rmtree(final)  # an incomplete folder is never valid
        try:
            os.rename(tmp, final)
        except OSError:
            # Another process finished the same fingerprint first; its files are identical.
            if not is_complete(final):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
            return IngestResult.load(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if progress:
        progress(f"wrote {sum(counts.values())} examples to {final}")
    return IngestResult(final, json.loads(json.dumps(full)))  # as read back from the file


def expand_files(patterns: Sequence[str] | str) -> list[str]:
    """Files behind TFX file patterns (or plain paths), sorted."""
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    found = sorted(f for p in patterns for f in glob_files(p))
    if not found:
        raise FileNotFoundError(f"no example files match {patterns}")
    return found


def raw_dataset(files: Sequence[str]):
    """Serialized tf.Examples from TFRecord files (gzip when the name ends in .gz)."""
    import tensorflow as tf  # noqa: PLC0415

    gz = [f for f in files if f.endswith(".gz")]
    plain = [f for f in files if not f.endswith(".gz")]
    datasets = []
    if gz:
        datasets.append(tf.data.TFRecordDataset(gz, compression_type="GZIP"))
    if plain:
        datasets.append(tf.data.TFRecordDataset(plain))
    ds = datasets[0]
    for other in datasets[1:]:
        ds = ds.concatenate(other)
    return ds


def first_examples(files: Sequence[str], n: int) -> list[bytes]:
    """The first ``n`` serialized examples of the files (e.g. TF Serving warmup requests)."""
    return [bytes(x.numpy()) for x in raw_dataset(files).take(n)]


def transformed_dataset(files: Sequence[str], tf_transform_output, batch_size: int,
                        feature: str, label: str):
    """(feature, label) batches of the raw examples in ``files`` run through the TFT graph,
    cached after the first pass (the transform runs once, not once per epoch)."""
    import tensorflow as tf  # noqa: PLC0415

    raw_spec = tf_transform_output.raw_feature_spec()
    tft_layer = tf_transform_output.transform_features_layer()

    def transform(serialized):
        transformed = tft_layer(tf.io.parse_example(serialized, raw_spec))
        return transformed[feature], transformed[label]

    return (raw_dataset(files).batch(256).map(transform, num_parallel_calls=tf.data.AUTOTUNE)
            .unbatch().cache().batch(batch_size))


def skip_or_raise(error: Exception, path: str, rel: str, skip: bool,
                  skipped: list[tuple[str, str]], progress: Callable[[str], None] | None
                  ) -> None:
    """A bad input file: raises ``error`` (its message starts with ``path``), or with
    ``skip`` (an app's ``skip_bad_files``) records (``rel``, reason) in ``skipped`` and
    reports it as one progress line; the ingestion summary lists it and the run prints the
    count."""
    if not skip:
        raise error
    message = str(error)
    reason = message[len(path) + 2:] if message.startswith(f"{path}: ") else message
    skipped.append((rel, reason))
    if progress:
        progress(f"skipped {rel}: {reason}")
