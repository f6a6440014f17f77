"""``suite drift`` and the server's request log, end to end on a real pushed version.

A tiny model (a numeric ``temperature`` and a categorical ``machine``; the label is never
served) goes through the suite's own TFT analysis, serving export and atomic push; its
training profile is TFDV's, computed the way StatisticsGen and SchemaGen do it. Requests
go over real gRPC to the suite's server with request logging on; the log is then checked
against the pushed version with ``suite drift``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import asdict
from types import SimpleNamespace

import numpy as np
import pytest

import suite  # noqa: F401  (Keras policy before TensorFlow)
import tensorflow as tf

from apps import frontdoor
from serving import drift
from serving.clients import GrpcClient, RestClient
from serving.clients import _example as example_of
from serving.repository import ModelEntry
from serving.server import ModelServer, ServerOptions
from serving.server.request_log import RequestLog
from suite.config import DriftConfig

MODEL = "machines"
MACHINES = ("press", "lathe", "mill")
SHARES = (0.5, 0.3, 0.2)  # of the machines in the training data
MEAN, STD = 60.0, 5.0  # temperature in the training data


def _rows(rng, n: int, *, mean: float = MEAN, shares=SHARES, machines=MACHINES) -> list[dict]:
    """Feature dicts of ``n`` requests (no label: requests never carry it)."""
    return [{"temperature": np.float32(t), "machine": m}
            for t, m in zip(rng.normal(mean, STD, n), rng.choice(machines, n, p=shares),
                            strict=True)]


def _serialized(rows) -> list[bytes]:
    return [example_of(row).SerializeToString() for row in rows]


def _records(path) -> list[bytes]:
    return [r.numpy() for r in tf.data.TFRecordDataset(str(path))]


def _preprocessing_fn(inputs):
    import tensorflow_transform as tft  # noqa: PLC0415

    return {"temperature_xf": tft.scale_to_z_score(inputs["temperature"]),
            "machine_xf": tft.compute_and_apply_vocabulary(inputs["machine"], num_oov_buckets=1),
            "label": inputs["label"]}


def _model():
    import keras  # noqa: PLC0415

    temperature = keras.Input((), name="temperature_xf")
    machine = keras.Input((), dtype="int64", name="machine_xf")
    columns = [keras.layers.Reshape((1,))(temperature),
               keras.layers.Reshape((1,))(keras.ops.cast(machine, "float32"))]
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Concatenate()(columns))
    return keras.Model([temperature, machine], outputs)


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> SimpleNamespace:
    """A repository holding one pushed version with its training profile, and a copy of
    that version without the profile (``bare``)."""
    import tensorflow_data_validation as tfdv  # noqa: PLC0415

    from components import transform_local  # noqa: PLC0415
    from serving.versions import push_atomically  # noqa: PLC0415
    from serving import export  # noqa: PLC0415

    root = tmp_path_factory.mktemp("drift")
    rows = _rows(np.random.default_rng(0), 400)
    for row in rows:
        row["label"] = int(row["temperature"] > MEAN)
    train = str(root / "train.tfrecord")
    with tf.io.TFRecordWriter(train) as writer:
        for example in _serialized(rows):
            writer.write(example)
    raw_spec = {"temperature": tf.io.FixedLenFeature([], tf.float32),
                "machine": tf.io.FixedLenFeature([], tf.string),
                "label": tf.io.FixedLenFeature([], tf.int64)}
    tft_output = transform_local.analyze([train], raw_spec, _preprocessing_fn,
                                         str(root / "transform"))
    spec = export.ExportSpec(("temperature", "machine"), ("temperature_xf", "machine_xf"),
                             export.classification_outputs(("normal", "hot")))
    exported = export.export_serving_model(
        _model(), tft_output, str(root / "export"), spec, model_name=MODEL,
        warmup_examples=_serialized(rows[:3]),
        metadata={"app": MODEL, "config": {"drift": asdict(DriftConfig())}})
    version, _ = push_atomically(exported, str(root / "models" / MODEL))
    version_dir = str(root / "models" / MODEL / version)
    shutil.copytree(version_dir, root / "bare" / MODEL / version)

    # The pipeline's profile: StatisticsGen's binary FeatureStats.pb, SchemaGen's schema.
    statistics = tfdv.generate_statistics_from_tfrecord(
        train, stats_options=drift.statistics_options(10))
    statistics_path = root / "statistics" / "Split-train" / "FeatureStats.pb"
    statistics_path.parent.mkdir(parents=True)
    statistics_path.write_bytes(statistics.SerializeToString())
    schema_path = root / "schema" / "schema.pbtxt"
    schema_path.parent.mkdir()
    tfdv.write_schema_text(tfdv.infer_schema(statistics), str(schema_path))
    folder = drift.write_training_profile(version_dir, str(schema_path), str(statistics_path))
    assert sorted(os.listdir(folder)) == [drift.SCHEMA_FILE, drift.STATISTICS_FILE]
    return SimpleNamespace(base=str(root / "models"), bare=str(root / "bare"),
                           version_dir=version_dir, root=root)


@contextlib.contextmanager
def _serving(repository, log_path, **options):
    """The suite's server with request logging on, and a gRPC client of it; stopped (and
    the log closed) on leaving."""
    entries = [ModelEntry(MODEL, os.path.join(repository.base, MODEL))]
    with ModelServer(entries, ServerOptions(grpc_port=0, rest_port=0,
                                            log_requests=str(log_path), **options)) as server, \
            GrpcClient(server.grpc_target, timeout_s=30) as client:
        yield server, client


def _drift(repository, requests, *extra: str, base: str | None = None) -> int:
    return frontdoor.main(["drift", "--model", MODEL, "--base", base or repository.base,
                           "--requests", str(requests), *extra])


def _raw(rows) -> dict[str, np.ndarray]:
    """The ``serving_raw`` inputs of feature dicts."""
    return {"temperature": np.array([r["temperature"] for r in rows], np.float32),
            "machine": np.array([r["machine"].encode() for r in rows], dtype=object)}


def _send_every_kind(client, rows) -> None:
    """Classify, Predict on serialized examples and Predict on raw tensors, 10 a request."""
    for start in range(0, len(rows), 30):
        classify, default, raw = (rows[start + i:start + i + 10] for i in (0, 10, 20))
        client.classify(MODEL, classify)
        client.predict(MODEL, {"examples": _serialized(default)})
        client.predict(MODEL, _raw(raw), signature="serving_raw")


def test_unshifted_requests_logged_by_the_server_pass(repository, tmp_path, capsys):
    rows = _rows(np.random.default_rng(1), 210)
    log_path = tmp_path / "requests.tfrecord"
    with _serving(repository, log_path) as (_, client):
        _send_every_kind(client, rows)
    logged = [tf.train.Example.FromString(r) for r in _records(log_path)]
    assert len(logged) == len(rows)  # every request, every example, once
    for example, row in zip(logged, rows, strict=True):  # in order: one client, one thread
        features = example.features.feature
        assert set(features) == {"temperature", "machine"}
        assert features["temperature"].float_list.value == pytest.approx([row["temperature"]])
        assert features["machine"].bytes_list.value == [row["machine"].encode()]

    capsys.readouterr()
    assert _drift(repository, log_path) == 0
    out = capsys.readouterr().out
    assert "drift: 0 of 2 features over the limits" in out
    assert "label" not in out  # never served, so never reported missing
    for feature, measure in (("machine", "L-infinity"), ("temperature", "Jensen-Shannon")):
        row = next(line.split() for line in out.splitlines() if line.startswith(feature))
        assert row[1] == measure and float(row[2]) < 0.1 and row[-1] == "ok", row


def test_a_shifted_temperature_is_flagged_by_its_jensen_shannon_divergence(repository, tmp_path,
                                                                           capsys):
    rows = _rows(np.random.default_rng(2), 200, mean=MEAN + 3 * STD)
    log_path = tmp_path / "shifted.tfrecord"
    with _serving(repository, log_path) as (_, client):
        for start in range(0, len(rows), 20):
            client.classify(MODEL, rows[start:start + 20])
    capsys.readouterr()
    assert _drift(repository, log_path) == 1
    out = capsys.readouterr().out
    assert "drift: 1 of 2 features over the limits" in out
    temperature = next(line.split() for line in out.splitlines()
                       if line.startswith("temperature"))
    assert temperature[1:] == ["Jensen-Shannon", temperature[2], "0.1", "OVER"]
    assert float(temperature[2]) > 0.3

    assert _drift(repository, log_path, "--json", "--max-jensen-shannon", "0.99") == 0
    result = json.loads(capsys.readouterr().out)
    by_name = {f["feature"]: f for f in result["features"]}
    assert by_name["temperature"]["limit"] == 0.99 and not by_name["temperature"]["over"]
    assert result["passed"] and result["examples"] == 200


def test_shifted_machine_shares_are_flagged_by_l_infinity_and_new_values_by_the_schema(
        repository, tmp_path):
    log_path = tmp_path / "machines.tfrecord"
    request_log = RequestLog(str(log_path))
    rng = np.random.default_rng(3)
    request_log.write(_serialized(_rows(rng, 200, shares=(0.1, 0.1, 0.8))))
    request_log.close()
    result = drift.check_drift(repository.version_dir, str(log_path))
    by_name = {f.feature: f for f in result.features}
    assert by_name["machine"].measure == drift.L_INFINITY and by_name["machine"].over
    assert by_name["machine"].value > 0.4  # the mill's share went from 0.2 to about 0.8
    assert not by_name["temperature"].over and not result.anomalies and not result.passed

    with_new = tmp_path / "new_machine.tfrecord"
    request_log = RequestLog(str(with_new))
    request_log.write(_serialized(_rows(rng, 200) + _rows(rng, 5, machines=("drill",) * 3,
                                                          shares=(1, 0, 0))))
    request_log.close()
    result = drift.check_drift(repository.version_dir, str(with_new))
    assert not result.over
    assert [a.feature for a in result.anomalies] == ["machine"]
    assert "drill" in result.anomalies[0].description


def test_the_log_keeps_about_the_sampled_share_of_requests(repository, tmp_path):
    rows = _rows(np.random.default_rng(4), 200)
    log_path = tmp_path / "sampled.tfrecord"
    with _serving(repository, log_path, log_sample_rate=0.25, log_seed=7) as (_, client):
        for row in rows:
            client.classify(MODEL, [row])
    assert 20 <= len(_records(log_path)) <= 80


def test_requests_over_rest_are_logged_too(repository, tmp_path):
    rows = _rows(np.random.default_rng(6), 20)
    log_path = tmp_path / "rest.tfrecord"
    with _serving(repository, log_path) as (server, _):
        rest = RestClient(server.rest_url, timeout_s=30)
        rest.classify(MODEL, rows[:10])
        rest.predict(MODEL, _raw(rows[10:]), signature="serving_raw")
        rest.close()
    logged = [tf.train.Example.FromString(r) for r in _records(log_path)]
    assert [e.features.feature["machine"].bytes_list.value[0].decode() for e in logged] == [
        r["machine"] for r in rows]


def test_the_log_is_appended_to_and_a_torn_last_record_cut_off(tmp_path):
    path = tmp_path / "requests.tfrecord"
    first = RequestLog(str(path))
    first.write([b"a", b"bb"])
    first.close()
    with open(path, "ab") as f:
        f.write(b"\x09\x00\x00")  # a crash in the middle of a header
    second = RequestLog(str(path))
    second.write([b"ccc"])
    second.close()
    assert _records(path) == [b"a", b"bb", b"ccc"]

    not_a_log = tmp_path / "notes.txt"
    not_a_log.write_text("not a TFRecord file, but long enough for a header\n")
    with pytest.raises(ValueError, match="notes.txt: exists and is not a TFRecord file"):
        RequestLog(str(not_a_log))


def _bad_file(tmp_path, repository, kind: str) -> str:
    path = tmp_path / f"{kind}.tfrecord"
    if kind == "text":
        path.write_text("temperature,machine\n61.2,press\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "prediction_logs":  # a TFRecord of PredictionLog protos, not tf.Examples
        shutil.copy(os.path.join(repository.version_dir, "assets.extra",
                                 "tf_serving_warmup_requests"), path)
    return str(path)


@pytest.mark.parametrize("kind, expected", [
    ("missing", "no such request log"),
    ("text", "not a TFRecord file of serialized tf.Example"),
    ("empty", "the request log is empty"),
    ("prediction_logs", "no tf.Example features"),
])
def test_a_bad_request_log_is_one_line_and_status_2(repository, tmp_path, capsys, kind, expected):
    path = _bad_file(tmp_path, repository, kind)
    capsys.readouterr()
    assert _drift(repository, path) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {path}: ") and expected in err and "\n" not in err, err


def test_a_version_without_profile_or_an_unknown_model_is_status_2(repository, tmp_path,
                                                                    capsys):
    log_path = tmp_path / "requests.tfrecord"
    RequestLog(str(log_path)).write(_serialized(_rows(np.random.default_rng(5), 5)))
    capsys.readouterr()
    assert _drift(repository, log_path, base=repository.bare) == 2
    err = capsys.readouterr().err.strip()
    profile = os.path.join(repository.bare, MODEL, os.path.basename(repository.version_dir),
                           drift.PROFILE_DIR)
    assert err.startswith(f"error: {profile}: no training data profile") and "\n" not in err
    assert "re-run" in err

    assert frontdoor.main(["drift", "--model", "nope", "--base", repository.base,
                           "--requests", str(log_path)]) == 2
    assert "no pushed version of model 'nope'" in capsys.readouterr().err


def test_serve_refuses_request_logging_without_the_suites_server(repository, tmp_path, capsys):
    serve = ["serve", "--base", repository.base, "--config-dir", str(tmp_path)]
    log_path = str(tmp_path / "requests.tfrecord")
    assert frontdoor.main([*serve, "--engine", "tensorflow_model_server",
                           "--log-requests", log_path]) == 2
    assert "request logging (--log-requests) needs the suite's server" in capsys.readouterr().err
    assert frontdoor.main([*serve, "--log-sample-rate", "0.5"]) == 2
    assert "--log-sample-rate needs --log-requests" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        frontdoor.main([*serve, "--log-requests", log_path, "--log-sample-rate", "0"])
    assert "expected more than 0" in capsys.readouterr().err


def test_limits_travel_with_the_model_and_flags_override_them(tmp_path):
    assert drift.drift_limits(str(tmp_path)) == {drift.JENSEN_SHANNON: 0.1,
                                                 drift.L_INFINITY: 0.1}  # DriftConfig()
    metadata = tmp_path / "assets.extra" / "suite_metadata.json"
    metadata.parent.mkdir()
    metadata.write_text(json.dumps({"app": MODEL, "config": {"drift": {
        "max_jensen_shannon": 0.25, "max_l_infinity": 0.05}}}))
    assert drift.drift_limits(str(tmp_path)) == {drift.JENSEN_SHANNON: 0.25,
                                                 drift.L_INFINITY: 0.05}
    assert drift.drift_limits(str(tmp_path), max_l_infinity=0.3)[drift.L_INFINITY] == 0.3


def test_request_histograms_take_the_training_statistics_bucket_count(tmp_path):
    import tensorflow_data_validation as tfdv

    log = tmp_path / "requests.tfrecord"
    with tf.io.TFRecordWriter(str(log)) as writer:
        for value in np.random.default_rng(0).normal(size=50):
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                "x": tf.train.Feature(float_list=tf.train.FloatList(value=[value]))}))
                .SerializeToString())
    training = tfdv.generate_statistics_from_tfrecord(
        str(log), stats_options=drift.statistics_options(37))
    assert drift.histogram_buckets(training) == 37
    assert drift.histogram_buckets(drift.request_statistics(str(log), 37)) == 37
