"""The suite's model server against a real pushed model over real gRPC and HTTP on loopback:
every gRPC method and REST route, every error case, TLS, batching, and a hot swap under load."""

from __future__ import annotations

import base64
import datetime
import http.client
import ipaddress
import json
import os
import shutil
import subprocess
import threading
import time

import grpc
import numpy as np
import pytest

import suite  # noqa: F401
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2, get_model_metadata_pb2, get_model_status_pb2, input_pb2, model_pb2,
    predict_pb2, regression_pb2)

from apps.sensor_vibration.client import VibrationClient
from serving.clients import GrpcClient, RestClient, ServingClientError
from serving.repository import BatchingConfig, ModelEntry
from serving.server import ModelServer, ServerOptions
from serving.server.models import read_signature_defs

MODEL = "sensor_vibration"  # the pushed model's name (conftest.py)

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


@pytest.fixture(scope="module")
def toy_repository(tmp_path_factory) -> str:
    """A second model with real classify and regress signatures (TF Serving's
    half_plus_three: y = 0.5 x + 3), taking serialized tf.Examples with a float ``x``."""
    spec = {"x": tf.io.FixedLenFeature([], tf.float32)}

    class Toy(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def regress(self, inputs):
            return {"outputs": 0.5 * tf.io.parse_example(inputs, spec)["x"] + 3.0}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def classify(self, inputs):
            p = tf.sigmoid(tf.io.parse_example(inputs, spec)["x"])
            n = tf.shape(p)[0]
            return {"classes": tf.tile(tf.constant([["neg", "pos"]]), [n, 1]),
                    "scores": tf.stack([1.0 - p, p], axis=1)}

    toy = Toy()
    root = tmp_path_factory.mktemp("toy")
    tf.saved_model.save(toy, str(root / "toy" / "1"), signatures={
        "serving_default": toy.regress, "regress": toy.regress, "classify": toy.classify})
    return str(root)


@pytest.fixture(scope="module")
def server(pushed_model, toy_repository):
    entries = [ModelEntry(MODEL, pushed_model.base_path, labels={"stable": pushed_model.version}),
               ModelEntry("toy", os.path.join(toy_repository, "toy"))]
    with ModelServer(entries, ServerOptions(grpc_port=0, rest_port=0,
                                            max_request_bytes=256 << 10)) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with GrpcClient(server.grpc_target, timeout_s=30) as c:
        yield c


@pytest.fixture(scope="module")
def reference(pushed_model):
    """The pushed model called in process."""
    return tf.saved_model.load(pushed_model.version_dir).signatures


def _rest(server, method: str, path: str, body=None) -> tuple[int, dict | str]:
    conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    conn.request(method, path, body=data)
    response = conn.getresponse()
    text = response.read().decode()
    conn.close()
    if response.getheader("Content-Type", "").startswith("application/json"):
        return response.status, json.loads(text)
    return response.status, text


def _predict_request(model=MODEL, signature="serving_default", **inputs):
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=model, signature_name=signature))
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


def _examples(values) -> np.ndarray:
    return np.array(list(values), dtype=object)


def _code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(ServingClientError) as info:
        call()
    return info.value.code, info.value.message


# ------------------------------------------------------------------------------------------
# gRPC


def test_grpc_client_keeps_trailing_nul_bytes_of_serialized_examples(client, pushed_model,
                                                                      reference):
    # A window ending in 0.0 serializes to bytes ending in NULs, which numpy's "S" dtype
    # would strip; a plain list of bytes must reach the model whole.
    signal = np.linspace(-1.0, 1.0, pushed_model.window, dtype=np.float32)
    signal[-1] = 0.0
    example = tf.train.Example(features=tf.train.Features(feature={
        "signal": tf.train.Feature(float_list=tf.train.FloatList(value=signal.tolist()))}))
    serialized = example.SerializeToString()
    assert serialized.endswith(b"\x00")
    result = client.predict(MODEL, {"examples": [serialized]})
    expected = reference["serving_default"](examples=tf.constant([serialized]))
    np.testing.assert_allclose(result.outputs["probabilities"], expected["probabilities"],
                               atol=1e-6)


def test_grpc_predict_matches_the_model_called_in_process(client, pushed_model, reference):
    examples = _examples(pushed_model.eval_examples[:5])
    result = client.predict(MODEL, {"examples": examples})
    expected = reference["serving_default"](examples=tf.constant(list(examples)))
    assert (result.model, result.version, result.signature) == (
        MODEL, pushed_model.version, "serving_default")
    assert set(result.outputs) == {"probabilities", "class_ids", "classes", "scores"}
    np.testing.assert_allclose(result.outputs["probabilities"], expected["probabilities"],
                               atol=1e-6)
    assert result.outputs["classes"].tolist() == expected["classes"].numpy().tolist()

    raw = tf.io.parse_example(list(examples), {"signal": tf.io.FixedLenFeature(
        [pushed_model.window], tf.float32)})["signal"].numpy()
    filtered = client.predict(MODEL, {"signal": raw}, signature="serving_raw",
                              output_filter=["scores"], label="stable")
    assert set(filtered.outputs) == {"scores"}
    np.testing.assert_allclose(filtered.outputs["scores"], expected["scores"], atol=1e-6)


def test_grpc_classify_and_regress(client, pushed_model, reference):
    # The vibration model's predict-style serving_default classifies (top class per example).
    examples = [tf.train.Example.FromString(e) for e in pushed_model.eval_examples[:3]]
    expected = reference["serving_default"](examples=tf.constant(pushed_model.eval_examples[:3]))
    results = client.classify(MODEL, examples)
    assert [r[0][0] for r in results] == [c.decode() for c in expected["classes"].numpy()]
    np.testing.assert_allclose([r[0][1] for r in results], expected["scores"], atol=1e-6)

    # A classify signature with [batch, classes] outputs gives every class; context features
    # are merged into each example.
    results = client.classify("toy", [{"x": 0.0}, {"x": 4.0}], signature="classify")
    assert [[label for label, _ in r] for r in results] == [["neg", "pos"]] * 2
    assert results[1][1][1] == pytest.approx(1 / (1 + np.exp(-4.0)), rel=1e-5)
    assert client.regress("toy", [{"x": 1.0}, {"x": 2.0}]) == [3.5, 4.0]
    assert client.regress("toy", [{}, {}], context={"x": 5.0}, signature="regress") == [5.5] * 2


def test_grpc_metadata_returns_every_signature_def_of_the_saved_model(client, pushed_model):
    signatures = client.metadata(MODEL)
    stored = read_signature_defs(pushed_model.version_dir)
    assert signatures == stored
    assert {"serving_default", "serving_raw", "transform_features"} <= set(signatures)
    assert signatures["serving_default"].inputs["examples"].dtype == tf.string.as_datatype_enum

    response = client.call(client.prediction.GetModelMetadata,
                           get_model_metadata_pb2.GetModelMetadataRequest(
                               model_spec=model_pb2.ModelSpec(name=MODEL),
                               metadata_field=["signature_def"]))
    assert response.model_spec.name == MODEL
    assert response.model_spec.version.value == pushed_model.version
    assert response.metadata["signature_def"].type_url.endswith(
        "tensorflow.serving.SignatureDefMap")


def test_grpc_model_status(client, pushed_model):
    for kwargs in ({}, {"version": pushed_model.version}, {"label": "stable"}):
        (status,) = client.status(MODEL, **kwargs)
        assert status.version == pushed_model.version
        assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
        assert status.status.error_code == 0


# ------------------------------------------------------------------------------------------
# REST


def test_rest_status_and_metadata_routes(server, pushed_model):
    version = str(pushed_model.version)
    for path in (f"/v1/models/{MODEL}", f"/v1/models/{MODEL}/versions/{version}",
                 f"/v1/models/{MODEL}/labels/stable"):
        status, body = _rest(server, "GET", path)
        assert status == 200, body
        assert body == {"model_version_status": [{
            "version": version, "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""}}]}
    status, body = _rest(server, "GET", f"/v1/models/{MODEL}/labels/stable/metadata")
    assert status == 200, body
    assert body["model_spec"] == {"name": MODEL, "signature_name": "", "version": version}
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    assert signature["inputs"]["examples"]["dtype"] == "DT_STRING"
    assert signature["inputs"]["examples"]["tensor_shape"]["dim"][0]["size"] == "-1"
    assert signature["outputs"]["probabilities"]["tensor_shape"]["dim"][1]["size"] == "3"


def test_rest_predict_row_and_columnar_formats(server, pushed_model, reference):
    examples = pushed_model.eval_examples[:2]
    expected = reference["serving_default"](examples=tf.constant(examples))
    b64 = [{"b64": base64.b64encode(e).decode()} for e in examples]

    status, body = _rest(server, "POST", f"/v1/models/{MODEL}:predict", {"instances": b64})
    assert status == 200, body
    assert [row["classes"] for row in body["predictions"]] == [
        c.decode() for c in expected["classes"].numpy()]
    np.testing.assert_allclose([row["probabilities"] for row in body["predictions"]],
                               expected["probabilities"], atol=1e-6)

    path = f"/v1/models/{MODEL}/versions/{pushed_model.version}:predict"
    status, body = _rest(server, "POST", path, {"inputs": {"examples": b64}})
    assert status == 200, body
    assert set(body["outputs"]) == {"probabilities", "class_ids", "classes", "scores"}
    assert body["outputs"]["class_ids"] == expected["class_ids"].numpy().tolist()

    signal = tf.io.parse_example(examples, {"signal": tf.io.FixedLenFeature(
        [pushed_model.window], tf.float32)})["signal"].numpy()
    status, body = _rest(server, "POST", f"/v1/models/{MODEL}/labels/stable:predict", {
        "signature_name": "serving_raw", "instances": signal.tolist()})
    assert status == 200, body
    np.testing.assert_allclose([row["scores"] for row in body["predictions"]],
                               expected["scores"], atol=1e-6)

    # One output: written without its name. Floats as TF Serving writes them.
    status, body = _rest(server, "POST", "/v1/models/toy:predict",
                         {"inputs": [{"b64": base64.b64encode(tf.train.Example(
                             features=tf.train.Features(feature={"x": tf.train.Feature(
                                 float_list=tf.train.FloatList(value=[1.0]))}))
                             .SerializeToString()).decode()}]})
    assert (status, body) == (200, {"outputs": [3.5]})


def test_rest_classify_regress_and_metrics(server):
    status, body = _rest(server, "POST", "/v1/models/toy:classify",
                         {"signature_name": "classify", "examples": [{"x": 0.0}]})
    assert (status, body) == (200, {"results": [[["neg", 0.5], ["pos", 0.5]]]})
    status, body = _rest(server, "POST", "/v1/models/toy:regress",
                         {"context": {"x": 2.0}, "examples": [{}, {}]})
    assert (status, body) == (200, {"results": [4.0, 4.0]})
    status, text = _rest(server, "GET", "/monitoring/prometheus/metrics")
    assert status == 200
    assert (':tensorflow:serving:request_count{model_name="toy",API="regress",'
            'entrypoint="REST",status="OK"}') in text


# ------------------------------------------------------------------------------------------
# Errors


def _bad_examples_request():
    return _predict_request(examples=np.array([b"not a tf.Example"], dtype=object))


@pytest.mark.parametrize("request_fn, code, message", [
    (lambda: _predict_request(model="nope", examples=np.array([b""], dtype=object)),
     NOT_FOUND, "Servable not found for request: Latest(nope)"),
    (lambda: _predict_request(signature="nope", examples=np.array([b""], dtype=object)),
     grpc.StatusCode.FAILED_PRECONDITION, 'Serving signature key "nope" not found'),
    (lambda: _predict_request(signal=np.zeros((1, 3), np.float32)),
     INVALID, "input tensor alias not found in signature: signal"),
    (lambda: _predict_request(examples=np.zeros((1,), np.float32)),
     INVALID, "Expects arg 'examples' to be string but float is provided"),
    (lambda: _predict_request(signature="serving_raw", signal=np.zeros((1, 3), np.float32)),
     INVALID, "input 'signal' expects shape [-1,256] but got [1,3]"),
    (lambda: _predict_request(signature="serving_raw", signal=np.zeros((1, 256), np.int32)),
     INVALID, "Expects arg 'signal' to be float but int32 is provided"),
    (_bad_examples_request, INVALID, "signature serving_default"),
])
def test_grpc_predict_errors(client, request_fn, code, message):
    got, details = _code(lambda: client.predict_request(request_fn()))
    assert got == code, details
    assert message in details
    assert MODEL in details or "nope" in details


def test_grpc_errors_of_the_other_methods(client, pushed_model):
    example = [tf.train.Example.FromString(pushed_model.eval_examples[0])]
    cases = [
        (lambda: client.predict(MODEL, {"examples": _examples([b""])}, version=7),
         NOT_FOUND, f"Specific({MODEL}, 7)"),
        (lambda: client.predict(MODEL, {"examples": _examples([b""])}, label="canary"),
         INVALID, "Unrecognized servable version label: canary"),
        (lambda: client.classify(MODEL, example, signature="transform_features"),
         INVALID, "not a classification signature"),
        (lambda: client.regress(MODEL, example), INVALID, "not a regression signature"),
        (lambda: client.classify(MODEL, example, signature="nope"),
         INVALID, "No signature was found with the name: nope"),
        (lambda: client.status("nope"), NOT_FOUND, "Could not find any versions of model nope"),
        (lambda: client.status(MODEL, version=7), NOT_FOUND,
         f"Could not find version 7 of model {MODEL}"),
        (lambda: client.metadata("nope"), NOT_FOUND, "Servable not found"),
        (lambda: client.call(client.prediction.GetModelMetadata,
                             get_model_metadata_pb2.GetModelMetadataRequest(
                                 model_spec=model_pb2.ModelSpec(name=MODEL),
                                 metadata_field=["graph"])),
         INVALID, "Metadata field graph is not supported"),
        (lambda: client.call(client.prediction.Classify, classification_pb2.ClassificationRequest(
            model_spec=model_pb2.ModelSpec(name=MODEL), input=input_pb2.Input())),
         INVALID, "Input is empty."),
        (lambda: client.call(client.prediction.Regress, regression_pb2.RegressionRequest(
            model_spec=model_pb2.ModelSpec(name="toy", version_label="x"),
            input=input_pb2.Input())), INVALID, "Unrecognized servable version label: x"),
        (lambda: client.predict(MODEL, {"examples": _examples([b"x" * (300 << 10)])}),
         grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than max"),
    ]
    for call, code, message in cases:
        got, details = _code(call)
        assert (got, message in details) == (code, True), details


@pytest.mark.parametrize("method, path, body, status, message", [
    ("POST", "/v1/models/nope:predict", {"instances": [1]}, 404,
     "Servable not found for request: Latest(nope)"),
    ("POST", f"/v1/models/{MODEL}/versions/7:predict", {"instances": [1]}, 404,
     f"Specific({MODEL}, 7)"),
    ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
    ("GET", f"/v1/models/{MODEL}/labels/canary", None, 400, "Unrecognized servable version label"),
    ("POST", f"/v1/models/{MODEL}:predict", b"{not json", 400, "JSON Parse error"),
    ("POST", f"/v1/models/{MODEL}:predict", {"instances": [1], "inputs": [1]}, 400,
     "only one of 'inputs' or 'instances'"),
    ("POST", f"/v1/models/{MODEL}:predict", {"instances": [{"b64": "@@@"}]}, 400,
     "Unable to base64 decode"),
    ("POST", f"/v1/models/{MODEL}:predict", {"instances": [1.5]}, 400,
     "is not of expected type: string"),
    ("POST", f"/v1/models/{MODEL}:predict",
     {"signature_name": "serving_raw", "instances": [[1.0, 2.0]]}, 400,
     "input 'signal' expects shape [-1,256] but got [1,2]"),
    ("POST", f"/v1/models/{MODEL}:predict",
     {"signature_name": "serving_raw", "inputs": {"signal": [[1.0], [1.0, 2.0]]}}, 400,
     "Encountered list at unexpected size"),
    ("POST", f"/v1/models/{MODEL}:predict",
     {"signature_name": "serving_raw", "inputs": {"sig": [[1.0]]}}, 400,
     "Missing named input: signal"),
    ("POST", f"/v1/models/{MODEL}:predict", {"signature_name": "nope", "instances": [1]}, 400,
     'Serving signature key "nope" not found'),
    ("POST", f"/v1/models/{MODEL}:regress", {"examples": [{"signal": [1.0]}]}, 400,
     "not a regression signature"),
    ("POST", f"/v1/models/{MODEL}:classify", {"examples": []}, 400,
     "'examples' value is an empty array"),
    ("POST", f"/v1/models/{MODEL}:classify", {"examples": [{"signal": [1.0, "a"]}]}, 400,
     "Unexpected element type in feature: signal"),
    ("POST", f"/v1/models/{MODEL}:explain", {}, 400, "Malformed request"),
    ("POST", f"/v1/models/{MODEL}:predict", b"x" * (300 << 10), 413, "larger than the server"),
])
def test_rest_errors(server, method, path, body, status, message):
    got, document = _rest(server, method, path, body)
    assert got == status, document
    assert set(document) == {"error"}
    assert message in document["error"]


def test_the_server_survives_bad_requests(server, client, pushed_model):
    conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=10)
    conn.putrequest("POST", f"/v1/models/{MODEL}:predict")
    conn.putheader("Content-Length", "100")
    conn.endheaders()
    conn.send(b'{"instances": [')  # then hang up mid-body
    conn.close()
    assert _rest(server, "GET", "/elsewhere")[0] == 404
    (status,) = client.status(MODEL)
    assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert client.predict(MODEL, {"examples": _examples(pushed_model.eval_examples[:1])})


# ------------------------------------------------------------------------------------------
# Typed clients and the app's --server option


def test_vibration_client_over_grpc_and_rest(server, pushed_model, reference):
    windows = tf.io.parse_example(pushed_model.eval_examples, {"signal": tf.io.FixedLenFeature(
        [pushed_model.window], tf.float32)})["signal"].numpy()
    expected = reference["serving_raw"](signal=tf.constant(windows))
    for vibration in (VibrationClient(server.grpc_target, max_windows_per_request=6),
                      VibrationClient.rest(server.rest_url)):
        assert vibration.window_values == pushed_model.window
        prediction = vibration.predict(windows[:, :, None])  # [n, window, channels]
        assert prediction.labels == [c.decode() for c in expected["classes"].numpy()]
        assert set(prediction.labels) <= set(pushed_model.classes)
        np.testing.assert_allclose(prediction.probabilities, expected["probabilities"],
                                   atol=1e-6)
    assert prediction.version is None  # REST does not say which version answered
    with pytest.raises(ValueError, match="takes windows of 256 values"):
        vibration.predict(np.zeros((2, 100), np.float32))
    rest = RestClient(server.rest_url)
    assert rest.metadata(MODEL) == read_signature_defs(pushed_model.version_dir)
    assert rest.status(MODEL)[0].version == pushed_model.version
    assert rest.regress("toy", [{"x": 1.0}]) == [3.5]
    assert rest.classify("toy", [{"x": 0.0}], signature="classify") == [[("neg", 0.5),
                                                                         ("pos", 0.5)]]


def test_sensor_vibration_predict_through_the_server(server, pushed_model, capsys):
    from apps.sensor_vibration import cli

    recording = os.path.join(pushed_model.raw_dir, sorted(
        f for f in os.listdir(pushed_model.raw_dir) if f.endswith(".mat"))[0])
    capsys.readouterr()
    assert cli.main(["predict", "--server", server.grpc_target, "-v", recording]) == 0
    remote = capsys.readouterr().out.splitlines()
    assert cli.main(["predict", "--model", pushed_model.version_dir, "-v", recording]) == 0
    local = capsys.readouterr().out.splitlines()
    assert remote[0] == f"server: {server.grpc_target} (model {MODEL})"
    assert remote[1:] == local[1:]  # the same votes, probabilities and top classes
    assert cli.main(["predict", recording]) == 2  # neither --model nor --server


# ------------------------------------------------------------------------------------------
# TLS, batching, hot swap


def _self_signed_certificate(folder) -> tuple[str, str]:
    """A self-signed certificate for localhost / 127.0.0.1 and its key (PEM files), made
    with the cryptography package, or the openssl command when it is not installed."""
    cert_path, key_path = folder / "server.crt", folder / "server.key"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", str(key_path), "-out", str(cert_path)],
                       check=True, capture_output=True)
        return str(cert_path), str(key_path)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(key, hashes.SHA256()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_grpc_over_tls(pushed_model, tmp_path):
    cert, key = _self_signed_certificate(tmp_path)
    options = ServerOptions(grpc_port=0, rest_port=None, tls_cert=cert, tls_key=key)
    with ModelServer([ModelEntry(MODEL, pushed_model.base_path)], options) as tls_server:
        target = f"localhost:{tls_server.grpc_port}"
        with open(cert, "rb") as f, GrpcClient(target, root_certificates=f.read()) as secure:
            assert secure.status(MODEL)[0].version == pushed_model.version
        with GrpcClient(target, timeout_s=5, retries=0) as plain:
            assert _code(lambda: plain.status(MODEL))[0] == grpc.StatusCode.UNAVAILABLE


def test_batching_merges_concurrent_requests(pushed_model, reference):
    batching = BatchingConfig(max_batch_size=8, batch_timeout_micros=500_000,
                              num_batch_threads=1, max_enqueued_batches=4)
    options = ServerOptions(grpc_port=0, rest_port=0, batching=batching)
    examples = pushed_model.eval_examples[:8]
    expected = reference["serving_default"](examples=tf.constant(examples))["probabilities"]
    results: dict[int, np.ndarray] = {}
    with ModelServer([ModelEntry(MODEL, pushed_model.base_path)], options) as batched:
        barrier = threading.Barrier(len(examples))

        def send(i: int) -> None:
            with GrpcClient(batched.grpc_target, timeout_s=30) as c:
                barrier.wait()
                results[i] = c.predict(MODEL, {"examples": _examples([examples[i]])}).outputs[
                    "probabilities"]

        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(examples))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = batched.batching_stats(MODEL)
        status, metrics = _rest(batched, "GET", "/monitoring/prometheus/metrics")
        with GrpcClient(batched.grpc_target) as c:
            too_big = _code(lambda: c.predict(MODEL, {"examples": _examples(examples * 2)}))
    np.testing.assert_allclose(np.concatenate([results[i] for i in range(8)]), expected,
                               atol=1e-6)
    assert stats.requests == 8 and stats.rows == 8
    assert stats.merged_batches >= 1 and stats.batches < 8, stats
    assert stats.max_requests_per_batch > 1
    merged = [line for line in metrics.splitlines()
              if line.startswith(":tensorflow:serving:batching_session:merged_batch_count")]
    assert merged == [f':tensorflow:serving:batching_session:merged_batch_count'
                      f'{{model_name="{MODEL}"}} {stats.merged_batches}']
    assert too_big == (INVALID, f"model {MODEL} version {pushed_model.version} signature "
                                "serving_default: Task size 16 is larger than maximum input "
                                "batch size 8")


def test_deadline_while_waiting_for_a_batch_leaves_the_server_serving(pushed_model):
    # A batch that waits 1 s to fill: a request with a 0.2 s deadline gives up while its
    # task is queued; its answer later finds nobody waiting, and the server goes on.
    batching = BatchingConfig(max_batch_size=8, batch_timeout_micros=1_000_000,
                              num_batch_threads=1, max_enqueued_batches=4)
    options = ServerOptions(grpc_port=0, rest_port=None, batching=batching)
    examples = _examples(pushed_model.eval_examples[:1])
    with ModelServer([ModelEntry(MODEL, pushed_model.base_path)], options) as batched:
        with GrpcClient(batched.grpc_target, timeout_s=0.2, retries=0) as hasty:
            code, _ = _code(lambda: hasty.predict(MODEL, {"examples": examples}))
        with GrpcClient(batched.grpc_target, timeout_s=30) as patient:
            first = patient.predict(MODEL, {"examples": examples}).outputs["probabilities"]
            second = patient.predict(MODEL, {"examples": examples}).outputs["probabilities"]
        stats = batched.batching_stats(MODEL)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    np.testing.assert_array_equal(first, second)
    assert stats.requests == 3  # the abandoned request still ran, in its own batch


def test_hot_swap_under_load_fails_no_request(pushed_model, push_copy, tmp_path):
    base = tmp_path / "repository" / MODEL
    shutil.copytree(pushed_model.version_dir, base / str(pushed_model.version))
    options = ServerOptions(grpc_port=0, rest_port=None, poll_seconds=0.2)
    examples = _examples(pushed_model.eval_examples[:2])
    seen, failures = [], []
    stop = threading.Event()
    with ModelServer([ModelEntry(MODEL, str(base))], options) as swapping:
        def hammer() -> None:
            with GrpcClient(swapping.grpc_target, timeout_s=30, retries=0) as c:
                while not stop.is_set():
                    try:
                        seen.append(c.predict(MODEL, {"examples": examples}).version)
                    except ServingClientError as e:
                        failures.append(e)

        thread = threading.Thread(target=hammer)
        thread.start()
        try:
            while len(seen) < 5 and not failures:
                time.sleep(0.05)
            new = push_copy(str(base))
            deadline = time.monotonic() + 120
            while swapping.served_versions(MODEL) != [new] and time.monotonic() < deadline:
                time.sleep(0.1)
            count = len(seen)
            while len(seen) < count + 5 and not failures:
                time.sleep(0.05)
        finally:
            stop.set()
            thread.join()
        with GrpcClient(swapping.grpc_target) as c:
            states = {s.version: s.state for s in c.status(MODEL)}
    assert failures == []
    assert new > pushed_model.version
    assert seen[0] == pushed_model.version and seen[-1] == new
    assert seen == sorted(seen)  # never back to the old version once the new one serves
    assert states == {pushed_model.version: get_model_status_pb2.ModelVersionStatus.END,
                      new: get_model_status_pb2.ModelVersionStatus.AVAILABLE}


def test_a_new_version_that_fails_to_load_leaves_the_old_one_serving(pushed_model, tmp_path):
    base = tmp_path / "repository" / MODEL
    old = pushed_model.version
    shutil.copytree(pushed_model.version_dir, base / str(old))
    options = ServerOptions(grpc_port=0, rest_port=None, poll_seconds=0.1)
    with ModelServer([ModelEntry(MODEL, str(base))], options) as server, \
            GrpcClient(server.grpc_target) as client:
        staging = base / ".staging-broken"
        shutil.copytree(pushed_model.version_dir, staging)
        (staging / "saved_model.pb").write_bytes(b"not a SavedModel")
        os.rename(staging, base / str(old + 1))
        deadline = time.monotonic() + 30
        states = {}
        while time.monotonic() < deadline:  # until the load has failed (it is retried)
            states = {s.version: s for s in client.status(MODEL)}
            if old + 1 in states and states[old + 1].state == states[old + 1].END:
                break
            time.sleep(0.05)
        assert states[old + 1].state == get_model_status_pb2.ModelVersionStatus.END
        assert (f"loading model {MODEL} version {old + 1}"
                in states[old + 1].status.error_message)
        assert states[old].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
        result = client.predict(MODEL, {"examples": _examples(pushed_model.eval_examples[:1])})
        assert result.version == old
