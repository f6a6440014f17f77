"""``suite drift``: has the serving traffic moved away from the data a model was trained on?

A pushed version carries the profile of its training data in ``assets.extra/data/``: the
schema (``schema.pbtxt``, SchemaGen's) and the training split's statistics
(``train_statistics.pb``, StatisticsGen's ``FeatureStats.pb``), written there by
``write_training_profile``. ``check_drift`` computes TFDV statistics of a request log (what
``suite serve --log-requests FILE`` writes: serialized tf.Examples) and compares them with
that profile using TFDV's drift comparators, the training statistics as the baseline:

- numeric features (float, and integers not marked categorical): the Jensen-Shannon
  divergence of the request histogram from the training histogram (0: the same
  distribution, 1: disjoint);
- categorical features (strings, categorical integers): the L-infinity distance of the value
  frequencies (the largest difference in any one value's share, 0 to 1);

and TFDV's schema checks on the requests (a feature missing, a value outside the schema's
domain). Only the features a request carries (the inputs of the version's ``serving_raw``
signature) are compared; the label never is. The limits are the app config's ``drift``
field, kept in the version's metadata, unless given on the command line. Exit status: 0
within the limits, 1 when a feature is over its limit or TFDV finds an anomaly, 2 on bad
input.

Only argparse is imported at start-up; TFDV loads in ``run``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass

PROFILE_DIR = os.path.join("assets.extra", "data")
SCHEMA_FILE = "schema.pbtxt"
STATISTICS_FILE = "train_statistics.pb"
SERVING = "SERVING"  # the schema environment of served requests (the label is not in it)
JENSEN_SHANNON = "jensen_shannon"
L_INFINITY = "l_infinity"
MEASURE_NAMES = {JENSEN_SHANNON: "Jensen-Shannon", L_INFINITY: "L-infinity"}
_MEASURES = {"JENSEN_SHANNON_DIVERGENCE": JENSEN_SHANNON, "L_INFTY": L_INFINITY}
_CHUNK = 4096  # examples decoded at a time: memory stays bounded on a long log


# -- the training profile of a version -------------------------------------------------------


def _read_bytes(path: str, what: str) -> bytes:
    from suite import files  # noqa: PLC0415

    if not files.exists(path) or files.isdir(path):
        raise FileNotFoundError(f"{path}: no such file (expected {what})")
    return files.read_bytes(path)


def _parse_schema(data: bytes, path: str):
    from google.protobuf import text_format  # noqa: PLC0415
    from tensorflow_metadata.proto.v0 import schema_pb2  # noqa: PLC0415

    try:
        return text_format.Parse(data.decode(), schema_pb2.Schema())
    except (text_format.ParseError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: expected a TFDV schema as a text proto (SchemaGen's "
                         f"schema.pbtxt): {str(e).splitlines()[0]}") from None


def _parse_statistics(data: bytes, path: str):
    from google.protobuf.message import DecodeError  # noqa: PLC0415
    from tensorflow_metadata.proto.v0 import statistics_pb2  # noqa: PLC0415

    statistics = statistics_pb2.DatasetFeatureStatisticsList()
    try:
        statistics.ParseFromString(data)
    except DecodeError:
        statistics.Clear()
    if not any(d.features for d in statistics.datasets):
        raise ValueError(f"{path}: expected TFDV statistics of the training split (a binary "
                         "DatasetFeatureStatisticsList, StatisticsGen's FeatureStats.pb)")
    return statistics


def write_training_profile(version_dir: str, schema_path: str, statistics_path: str) -> str:
    """Copies the schema (text proto) and the training split's statistics (binary
    ``FeatureStats.pb``) into ``<version_dir>/assets.extra/data/`` as ``schema.pbtxt`` and
    ``train_statistics.pb``, each atomically; returns that folder. Both are parsed first, so
    a wrong file is refused with its name."""
    from suite import files  # noqa: PLC0415

    if not files.isdir(version_dir):
        raise FileNotFoundError(f"{version_dir}: no such model folder")
    schema = _read_bytes(schema_path, "a TFDV schema text proto")
    _parse_schema(schema, schema_path)
    statistics = _read_bytes(statistics_path, "TFDV statistics (FeatureStats.pb)")
    _parse_statistics(statistics, statistics_path)
    folder = os.path.join(version_dir, PROFILE_DIR)
    files.write_atomic(os.path.join(folder, SCHEMA_FILE), schema)
    files.write_atomic(os.path.join(folder, STATISTICS_FILE), statistics)
    return folder


def read_training_profile(version_dir: str):
    """``(schema, statistics)`` of the version's training data: a ``schema_pb2.Schema`` and
    a ``DatasetFeatureStatisticsList``."""
    folder = os.path.join(version_dir, PROFILE_DIR)
    schema_path = os.path.join(folder, SCHEMA_FILE)
    statistics_path = os.path.join(folder, STATISTICS_FILE)
    from suite import files  # noqa: PLC0415

    if not (files.exists(schema_path) and files.exists(statistics_path)):
        raise FileNotFoundError(
            f"{folder}: no training data profile ({SCHEMA_FILE}, {STATISTICS_FILE}); the model "
            "was pushed before profiles were kept with it: re-run the app's pipeline to push "
            "a version that has one")
    return (_parse_schema(_read_bytes(schema_path, "a schema"), schema_path),
            _parse_statistics(_read_bytes(statistics_path, "statistics"), statistics_path))


# -- the result --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureDrift:
    """One served feature: its measure, value (None: TFDV could not compare it) and limit."""

    feature: str
    measure: str  # JENSEN_SHANNON or L_INFINITY
    value: float | None
    limit: float

    @property
    def over(self) -> bool:
        return self.value is not None and self.value > self.limit


@dataclass(frozen=True)
class Anomaly:
    """A TFDV anomaly of the requests on a served feature (or the whole dataset: '')."""

    feature: str
    short: str
    description: str


@dataclass(frozen=True)
class DriftResult:
    """What ``check_drift`` found."""

    version_dir: str
    requests: str
    examples: int  # in the request log
    training_examples: int
    features: tuple[FeatureDrift, ...]
    anomalies: tuple[Anomaly, ...]
    notes: tuple[str, ...] = ()

    @property
    def over(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.over]

    @property
    def passed(self) -> bool:
        """No feature over its limit and no anomaly."""
        return not self.over and not self.anomalies

    def to_dict(self) -> dict:
        """JSON-safe: every field, each feature's ``over``, and ``passed``."""
        result = asdict(self)
        for row, feature in zip(result["features"], self.features, strict=True):
            row["over"] = feature.over
        result["passed"] = self.passed
        return result


# -- the check -----------------------------------------------------------------------------


def drift_limits(version_dir: str, max_jensen_shannon: float | None = None,
                 max_l_infinity: float | None = None) -> dict[str, float]:
    """Measure -> limit: the arguments, else the app config's ``drift`` field kept in the
    version's metadata, else ``DriftConfig``'s defaults."""
    from serving.export import load_metadata  # noqa: PLC0415
    from suite.config import DriftConfig  # noqa: PLC0415

    limits = asdict(DriftConfig())
    try:
        kept = load_metadata(version_dir).get("config", {}).get("drift") or {}
    except FileNotFoundError:  # not a suite export: the defaults
        kept = {}
    limits.update({k: float(v) for k, v in kept.items() if k in limits})
    if max_jensen_shannon is not None:
        limits["max_jensen_shannon"] = max_jensen_shannon
    if max_l_infinity is not None:
        limits["max_l_infinity"] = max_l_infinity
    return {JENSEN_SHANNON: limits["max_jensen_shannon"], L_INFINITY: limits["max_l_infinity"]}


def served_features(version_dir: str) -> list[str] | None:
    """The raw features a request carries: the inputs of the ``serving_raw`` signature
    (None when the SavedModel has none)."""
    from serving.export import SERVING_RAW  # noqa: PLC0415
    from serving.server.models import read_signature_defs  # noqa: PLC0415

    signature = read_signature_defs(version_dir).get(SERVING_RAW)
    return None if signature is None else sorted(signature.inputs)


def _examples(path: str):
    """The serialized records of a TFRecord file (GZIP or not), in chunks of ``_CHUNK``;
    ValueError when the file is not a TFRecord file."""
    import tensorflow as tf  # noqa: PLC0415

    with open(path, "rb") as f:
        gzip = f.read(2) == b"\x1f\x8b"
    chunk, count = [], 0
    try:
        for record in tf.data.TFRecordDataset(path, "GZIP" if gzip else ""):
            chunk.append(record.numpy())
            if len(chunk) == _CHUNK:
                count += len(chunk)
                yield chunk
                chunk = []
    except tf.errors.DataLossError as e:
        count += len(chunk)
        raise ValueError(f"{path}: not a TFRecord file of serialized tf.Example (expected "
                         "what `suite serve --log-requests` writes; unreadable after "
                         f"{count} records: {e.message.splitlines()[0]})") from None
    if chunk:
        yield chunk


def statistics_options(histogram_buckets: int = 10):
    """The TFDV options of both sides of the comparison: StatisticsGen's training statistics
    (``pipelines.builder``, the app config's ``drift.histogram_buckets``) and the request
    log's (as many buckets as the training histograms have)."""
    import tensorflow_data_validation as tfdv  # noqa: PLC0415

    return tfdv.StatsOptions(num_histogram_buckets=histogram_buckets)


def histogram_buckets(statistics) -> int:
    """The bucket count of the standard numeric histograms in ``statistics`` (10, TFDV's
    default, when it has no numeric feature)."""
    from tensorflow_metadata.proto.v0 import statistics_pb2  # noqa: PLC0415

    standard = statistics_pb2.Histogram.STANDARD
    for dataset in statistics.datasets:
        for feature in dataset.features:
            for histogram in feature.num_stats.histograms:
                if histogram.type == standard and histogram.buckets:
                    return len(histogram.buckets)
    return 10


def request_statistics(path: str, buckets: int = 10):
    """TFDV statistics of a request log (serialized tf.Examples), computed in process
    chunk by chunk with TFDV's in-memory generators (StatisticsGen's options)."""
    from tensorflow_data_validation.statistics import stats_impl  # noqa: PLC0415
    from tfx_bsl.coders import example_coder  # noqa: PLC0415

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such request log (expected a TFRecord of "
                                "serialized tf.Example, as `suite serve --log-requests` writes)")
    options = statistics_options(buckets)
    generators = stats_impl.get_generators(options, in_memory=True)
    decoder = example_coder.ExamplesToRecordBatchDecoder()
    accumulators, examples, columns = None, 0, set()
    for chunk in _examples(path):
        try:
            batch = decoder.DecodeBatch(chunk)
        except RuntimeError as e:  # tfx_bsl's DATA_LOSS: the bytes are not a tf.Example
            raise ValueError(f"{path}: expected serialized tf.Example records, got records "
                             f"that are not ({e})") from None
        partial = stats_impl.generate_partial_statistics_in_memory(batch, options, generators)
        accumulators = partial if accumulators is None else [
            g.merge_accumulators([a, b]) for g, a, b in zip(generators, accumulators, partial,
                                                            strict=True)]
        examples += len(chunk)
        columns.update(batch.schema.names)
    if not examples:
        raise ValueError(f"{path}: the request log is empty; serve with `suite serve "
                         "--log-requests FILE` and let requests arrive first")
    if not columns:
        raise ValueError(f"{path}: {examples} records but no tf.Example features in them "
                         "(expected serialized tf.Example, as `suite serve --log-requests` "
                         "writes)")
    return stats_impl.extract_statistics_output(accumulators, generators)


def _is_categorical(feature) -> bool:
    from tensorflow_metadata.proto.v0 import schema_pb2  # noqa: PLC0415

    if feature.type == schema_pb2.BYTES:
        return True
    return feature.type == schema_pb2.INT and (
        feature.HasField("bool_domain") or (feature.HasField("int_domain")
                                            and feature.int_domain.is_categorical))


def _serving_schema(schema, served: list[str], limits: dict[str, float]):
    """A copy of ``schema`` for the requests: the served features in the SERVING
    environment with drift comparators, every other feature (the label) out of it."""
    schema = type(schema).FromString(schema.SerializeToString())
    for environment in ("TRAINING", SERVING):
        if environment not in schema.default_environment:
            schema.default_environment.append(environment)
    for feature in schema.feature:
        for field in (feature.in_environment, feature.not_in_environment):
            if SERVING in field:
                field.remove(SERVING)
        if feature.name not in served:
            feature.not_in_environment.append(SERVING)
        elif _is_categorical(feature):
            feature.drift_comparator.infinity_norm.threshold = limits[L_INFINITY]
        else:
            feature.drift_comparator.jensen_shannon_divergence.threshold = limits[JENSEN_SHANNON]
    return schema


def _feature_of(path) -> str:
    return ".".join(path.step)


def check_drift(version_dir: str, requests_path: str, *, max_jensen_shannon: float | None = None,
                max_l_infinity: float | None = None) -> DriftResult:
    """Compares a request log with the version's training profile (see the module doc)."""
    import tensorflow_data_validation as tfdv  # noqa: PLC0415
    from tensorflow_metadata.proto.v0 import anomalies_pb2  # noqa: PLC0415

    if not os.path.isdir(version_dir):
        raise FileNotFoundError(f"{version_dir}: no such model version folder")
    schema, training = read_training_profile(version_dir)
    limits = drift_limits(version_dir, max_jensen_shannon, max_l_infinity)
    requests = request_statistics(requests_path, histogram_buckets(training))
    schema_features = {f.name for f in schema.feature}
    served = served_features(version_dir)
    notes = []
    if served is None:
        served = sorted(schema_features & {_feature_of(f.path) or f.name
                                           for d in requests.datasets for f in d.features})
        notes.append("the SavedModel has no serving_raw signature: compared the schema's "
                     "features the requests carry")
    served = [f for f in served if f in schema_features]
    serving_schema = _serving_schema(schema, served, limits)
    anomalies = tfdv.validate_statistics(requests, serving_schema, environment=SERVING,
                                         previous_statistics=training)

    measured = {}
    for info in anomalies.drift_skew_info:
        for measurement in info.drift_measurements:
            name = type(measurement).Type.Name(measurement.type)
            if name in _MEASURES:
                measured[_feature_of(info.path)] = (_MEASURES[name], measurement.value)
    features = []
    for feature in serving_schema.feature:
        if feature.name in served:
            measure = L_INFINITY if _is_categorical(feature) else JENSEN_SHANNON
            value = measured.get(feature.name, (measure, None))[1]
            features.append(FeatureDrift(feature.name, measure, value, limits[measure]))
    found = []
    reason_name = anomalies_pb2.AnomalyInfo.Type.Name
    for name, info in sorted(anomalies.anomaly_info.items()):
        # The comparators' own anomalies are the rows over their limits above.
        reasons = [r for r in info.reason if not reason_name(r.type).startswith("COMPARATOR_")]
        if name in served and reasons:
            found += [Anomaly(name, r.short_description, r.description) for r in reasons]
    for reason in anomalies.dataset_anomaly_info.reason:
        found.append(Anomaly("", reason.short_description, reason.description))
    return DriftResult(version_dir, requests_path, requests.datasets[0].num_examples,
                       training.datasets[0].num_examples, tuple(features), tuple(found),
                       tuple(notes))


# -- command line ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``suite drift``."""
    from serving.repository import DEFAULT_BASE  # noqa: PLC0415 (no TensorFlow import)
    from serving.serve import _ranged  # noqa: PLC0415

    parser.add_argument("--model", required=True, metavar="NAME", help="the served model")
    parser.add_argument("--requests", required=True, metavar="FILE",
                        help="request log: a TFRecord of serialized tf.Example, e.g. written "
                             "by `suite serve --log-requests FILE`")
    parser.add_argument("--base", default=DEFAULT_BASE, metavar="DIR",
                        help="model repository: DIR/<model>/<version>/ (default: %(default)s)")
    parser.add_argument("--version", type=_ranged(int, 0), metavar="V",
                        help="the version to compare with (default: the newest)")
    parser.add_argument("--max-jensen-shannon", type=_ranged(float, 0.0, 1.0), metavar="X",
                        help="limit for numeric features (default: the model's "
                             "drift.max_jensen_shannon)")
    parser.add_argument("--max-l-infinity", type=_ranged(float, 0.0, 1.0), metavar="X",
                        help="limit for categorical features (default: the model's "
                             "drift.max_l_infinity)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def version_folder(base: str, model: str, version: int | None = None) -> str:
    """``<base>/<model>/<version>`` (default: the newest version); FileNotFoundError names
    what is missing."""
    from serving.versions import list_versions  # noqa: PLC0415

    model_dir = os.path.join(base, model)
    versions = list_versions(model_dir)
    if not versions:
        raise FileNotFoundError(f"{model_dir}: no pushed version of model {model!r} (expected "
                                f"{model_dir}/<version>/)")
    if version is None:
        version = versions[-1]
    elif version not in versions:
        raise FileNotFoundError(f"{os.path.join(model_dir, str(version))}: no such version "
                                f"(pushed: {', '.join(map(str, versions))})")
    return os.path.join(model_dir, str(version))


def format_result(result: DriftResult) -> str:
    """The table ``suite drift`` prints."""
    rows = [("feature", "measure", "value", "limit", "verdict")]
    for f in result.features:
        rows.append((f.feature, MEASURE_NAMES[f.measure],
                     "-" if f.value is None else f"{f.value:.4f}", f"{f.limit:g}",
                     "OVER" if f.over else ("not compared" if f.value is None else "ok")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"{result.requests}: {result.examples} logged examples against the "
             f"{result.training_examples} training examples of {result.version_dir}"]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
              for row in rows]
    lines += [f"anomaly: {a.feature or '(dataset)'}: {a.short}: {a.description}"
              for a in result.anomalies]
    lines += [f"note: {n}" for n in result.notes]
    lines.append(f"drift: {len(result.over)} of {len(result.features)} features over the limits"
                 + (f"; {len(result.anomalies)} anomalies" if result.anomalies else ""))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """``suite drift``: 0 within the limits, 1 drift or an anomaly, 2 bad input."""
    from suite.quiet import quiet  # noqa: PLC0415

    quiet()
    try:
        version_dir = version_folder(args.base, args.model, args.version)
        result = check_drift(version_dir, args.requests,
                             max_jensen_shannon=args.max_jensen_shannon,
                             max_l_infinity=args.max_l_infinity)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result.to_dict(), indent=2) if args.json else format_result(result))
    return 0 if result.passed else 1
