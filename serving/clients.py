"""Typed clients of a TF Serving endpoint (tensorflow_model_server or the suite's server).

- ``GrpcClient``: PredictionService / ModelService stubs from tensorflow-serving-api, with a
  per-call timeout and retries with exponential backoff on UNAVAILABLE (a server starting,
  restarting or with a full batch queue);
- ``RestClient``: the same calls over the REST API (keep-alive connection per thread;
  retries on HTTP 503 and refused connections);
- ``AppClient``: the base of a typed client of one served model (tf.Examples built from
  feature dicts, sent to ``serving_default``, through either transport); an app subclasses
  it with its own features and outputs, next to the app's code.

Both transports return the same Python types, and raise ``ServingClientError`` carrying the
canonical status code and the server's message.
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import grpc
import numpy as np
from google.protobuf import json_format
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import (
    classification_pb2, get_model_metadata_pb2, get_model_status_pb2, input_pb2, model_pb2,
    model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc, regression_pb2)

from serving.tensor_proto import to_ndarray, to_tensor_proto

DEFAULT_GRPC_TARGET = "localhost:8500"
DEFAULT_REST_URL = "http://localhost:8501"
# HTTP statuses of TF Serving's REST API back to canonical codes (413: request too large).
_CODE_BY_HTTP = {
    400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ABORTED, 413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED, 499: grpc.StatusCode.CANCELLED,
    500: grpc.StatusCode.INTERNAL, 501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE, 504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


class ServingClientError(Exception):
    """A request failed; ``code`` is the canonical gRPC status code."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class PredictResult:
    """Outputs of a Predict call and the model version that answered (over REST, whose
    predict response does not say, the version asked for or None)."""

    outputs: dict[str, np.ndarray]
    model: str
    version: int | None
    signature: str


def _spec(model: str, version: int | None, label: str | None,
          signature: str = "") -> model_pb2.ModelSpec:
    """A ModelSpec naming a model and optionally a version or label and signature."""
    spec = model_pb2.ModelSpec(name=model, signature_name=signature)
    if version is not None:
        spec.version.value = int(version)
    if label:
        spec.version_label = label
    return spec


def _example(features: example_pb2.Example | Mapping[str, Any]) -> example_pb2.Example:
    """A tf.Example from a dict of name -> value or array of values: bytes/str become a
    bytes_list, integers and booleans an int64_list, other numbers a float_list."""
    if isinstance(features, example_pb2.Example):
        return features
    example = example_pb2.Example()
    for name, value in features.items():
        values = np.asarray(value, dtype=object if isinstance(value, bytes) else None).ravel()
        feature = example.features.feature[name]
        if values.dtype.kind in "OSU":
            feature.bytes_list.value.extend(v.encode() if isinstance(v, str) else bytes(v)
                                            for v in values)
        elif values.dtype.kind in "iub":
            feature.int64_list.value.extend(values.astype(np.int64).tolist())
        else:
            feature.float_list.value.extend(values.tolist())
    return example


def _input(examples: Sequence, context: Mapping | None) -> input_pb2.Input:
    """A tensorflow.serving.Input of examples (and a shared context)."""
    proto = input_pb2.Input()
    target = proto.example_list_with_context if context is not None else proto.example_list
    if context is not None:
        proto.example_list_with_context.context.CopyFrom(_example(context))
    for item in examples:
        target.examples.add().CopyFrom(_example(item))
    return proto


def _classes(result) -> list[list[tuple[str, float]]]:
    """(label, score) pairs per example of a ClassificationResult."""
    return [[(c.label, c.score) for c in item.classes] for item in result.classifications]


class GrpcClient:
    """TF Serving's gRPC API with timeouts and retries."""

    def __init__(self, target: str = DEFAULT_GRPC_TARGET, *, timeout_s: float = 10.0,
                 retries: int = 3, backoff_s: float = 0.05, tls: bool = False,
                 root_certificates: bytes | None = None, max_message_bytes: int = 64 << 20):
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes)]
        if tls or root_certificates:
            self.channel = grpc.secure_channel(
                target, grpc.ssl_channel_credentials(root_certificates), options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        self.target = target
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def close(self) -> None:
        """Closes the channel."""
        self.channel.close()

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def call(self, rpc, request):
        """Calls a stub method; retries UNAVAILABLE with exponential backoff."""
        attempt = 0
        while True:
            try:
                return rpc(request, timeout=self.timeout_s)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE or attempt >= self.retries:
                    raise ServingClientError(e.code(), e.details() or "") from None
            time.sleep(self.backoff_s * 2 ** attempt)
            attempt += 1

    def predict_request(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        """Sends a ready-made PredictRequest."""
        return self.call(self.prediction.Predict, request)

    def predict(self, model: str, inputs: Mapping[str, np.ndarray], *, signature: str = "",
                version: int | None = None, label: str | None = None,
                output_filter: Sequence[str] = ()) -> PredictResult:
        """Predict with numpy inputs; outputs come back as numpy arrays."""
        request = predict_pb2.PredictRequest(model_spec=_spec(model, version, label, signature),
                                             output_filter=list(output_filter))
        for name, value in inputs.items():
            array = np.asarray(value)
            if array.dtype.kind == "S":
                # numpy's fixed-width bytes drop trailing NUL bytes, which corrupts serialized
                # tf.Examples: keep the Python bytes objects whole.
                array = np.asarray(value, dtype=object)
            request.inputs[name].CopyFrom(to_tensor_proto(array))
        response = self.predict_request(request)
        return PredictResult({k: to_ndarray(v) for k, v in response.outputs.items()},
                             response.model_spec.name, response.model_spec.version.value,
                             response.model_spec.signature_name)

    def classify(self, model: str, examples: Sequence, *, context: Mapping | None = None,
                 signature: str = "", version: int | None = None,
                 label: str | None = None) -> list[list[tuple[str, float]]]:
        """Classify tf.Examples (or dicts of features): per example, (label, score) pairs."""
        request = classification_pb2.ClassificationRequest(
            model_spec=_spec(model, version, label, signature), input=_input(examples, context))
        return _classes(self.call(self.prediction.Classify, request).result)

    def regress(self, model: str, examples: Sequence, *, context: Mapping | None = None,
                signature: str = "", version: int | None = None,
                label: str | None = None) -> list[float]:
        """Regress tf.Examples (or dicts of features): one value per example."""
        request = regression_pb2.RegressionRequest(
            model_spec=_spec(model, version, label, signature), input=_input(examples, context))
        return [r.value for r in self.call(self.prediction.Regress, request).result.regressions]

    def metadata(self, model: str, *, version: int | None = None,
                 label: str | None = None) -> dict:
        """Signature name -> SignatureDef of the (latest) version."""
        response = self.call(self.prediction.GetModelMetadata,
                             get_model_metadata_pb2.GetModelMetadataRequest(
                                 model_spec=_spec(model, version, label),
                                 metadata_field=["signature_def"]))
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_defs)
        return dict(signature_defs.signature_def)

    def status(self, model: str, *, version: int | None = None,
               label: str | None = None) -> list:
        """The ModelVersionStatus of each version (or of the one asked for)."""
        response = self.call(self.models.GetModelStatus,
                             get_model_status_pb2.GetModelStatusRequest(
                                 model_spec=_spec(model, version, label)))
        return list(response.model_version_status)


def _json_value(array: np.ndarray) -> Any:
    """An array as (nested) JSON values; bytes as TF Serving's {"b64": ...} objects."""
    if array.dtype.kind not in "OS":
        return array.tolist()
    flat = np.empty(array.size, dtype=object)
    flat[:] = [v if isinstance(v, str) else {"b64": base64.b64encode(bytes(v)).decode()}
               for v in array.ravel()]
    return flat.reshape(array.shape).tolist()


class RestClient:
    """TF Serving's REST API with timeouts and retries (HTTP 503 and refused connections)."""

    def __init__(self, base_url: str = DEFAULT_REST_URL, *, timeout_s: float = 10.0,
                 retries: int = 3, backoff_s: float = 0.05):
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"expected a base URL like http://host:port, got {base_url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(self.host, self.port,
                                                                 timeout=self.timeout_s)
        return conn

    def close(self) -> None:
        """Closes this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def request_json(self, method: str, path: str, body: Any = None) -> Any:
        """One REST call; returns the decoded JSON response."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        attempt = 0
        while True:
            try:
                status, text = self._send(method, path, data, headers)
            except TimeoutError as e:
                raise ServingClientError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                         f"{method} {path}: {e}") from None
            except (ConnectionError, http.client.HTTPException) as e:
                if attempt >= self.retries:
                    raise ServingClientError(grpc.StatusCode.UNAVAILABLE,
                                             f"{method} {path}: {e}") from None
            else:
                if status != 503 or attempt >= self.retries:
                    break
            time.sleep(self.backoff_s * 2 ** attempt)
            attempt += 1
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            document = {"error": text.decode(errors="replace")}
        if status != 200:
            message = document.get("error", "") if isinstance(document, dict) else str(document)
            raise ServingClientError(_CODE_BY_HTTP.get(status, grpc.StatusCode.UNKNOWN), message)
        return document

    def _send(self, method: str, path: str, data: bytes | None,
              headers: dict) -> tuple[int, bytes]:
        """One HTTP exchange on this thread's keep-alive connection (dropped on failure)."""
        conn = self._connection()
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            text = response.read()
        except BaseException:
            self.close()
            raise
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        return response.status, text

    @staticmethod
    def _path(model: str, version: int | None, label: str | None) -> str:
        """The REST path of a model, version or label."""
        path = f"/v1/models/{quote(model, safe='')}"
        if version is not None:
            path += f"/versions/{int(version)}"
        elif label:
            path += f"/labels/{quote(label, safe='')}"
        return path

    def predict(self, model: str, inputs: Mapping[str, np.ndarray], *, signature: str = "",
                version: int | None = None, label: str | None = None) -> PredictResult:
        """Predict in the columnar format; bytes go as {"b64": ...}. Outputs come back as
        numpy arrays (strings as bytes); a signature's only output comes back under the key
        "" (TF Serving's REST API drops its name)."""
        body: dict[str, Any] = {"inputs": {k: _json_value(np.asarray(v))
                                           for k, v in inputs.items()}}
        if signature:
            body["signature_name"] = signature
        outputs = self.request_json("POST", self._path(model, version, label) + ":predict",
                                    body)["outputs"]
        if not isinstance(outputs, dict):  # one output is returned without its name
            outputs = {"": outputs}
        return PredictResult({k: self._array(v) for k, v in outputs.items()}, model, version,
                             signature)

    @staticmethod
    def _array(value: Any) -> np.ndarray:
        """A JSON output as a numpy array (strings and b64 objects as bytes)."""
        array = np.asarray(value, dtype=object)
        flat = [base64.b64decode(v["b64"]) if isinstance(v, dict) else
                v.encode() if isinstance(v, str) else v for v in array.ravel()]
        if flat and all(isinstance(v, bytes) for v in flat):
            return np.array(flat, dtype=object).reshape(array.shape)
        return np.array(value)

    def _examples_body(self, examples: Sequence[Mapping], context: Mapping | None,
                       signature: str) -> dict:
        """The JSON body of a classify/regress request."""
        def plain(features: Mapping) -> dict:
            return {k: _json_value(np.asarray(v, dtype=object if isinstance(v, bytes) else None))
                    for k, v in features.items()}

        body: dict[str, Any] = {"examples": [plain(e) for e in examples]}
        if context is not None:
            body["context"] = plain(context)
        if signature:
            body["signature_name"] = signature
        return body

    def classify(self, model: str, examples: Sequence[Mapping], *,
                 context: Mapping | None = None, signature: str = "",
                 version: int | None = None,
                 label: str | None = None) -> list[list[tuple[str, float]]]:
        """Classify examples given as dicts of features: per example, (label, score) pairs."""
        results = self.request_json("POST", self._path(model, version, label) + ":classify",
                                    self._examples_body(examples, context, signature))["results"]
        return [[(c[0], c[1]) for c in row] for row in results]

    def regress(self, model: str, examples: Sequence[Mapping], *,
                context: Mapping | None = None, signature: str = "",
                version: int | None = None, label: str | None = None) -> list[float]:
        """Regress examples given as dicts of features: one value per example."""
        return self.request_json("POST", self._path(model, version, label) + ":regress",
                                 self._examples_body(examples, context, signature))["results"]

    def metadata(self, model: str, *, version: int | None = None,
                 label: str | None = None) -> dict:
        """Signature name -> SignatureDef of the (latest) version."""
        document = self.request_json("GET", self._path(model, version, label) + "/metadata")
        signature_defs = json_format.ParseDict(document["metadata"]["signature_def"],
                                               get_model_metadata_pb2.SignatureDefMap())
        return dict(signature_defs.signature_def)

    def status(self, model: str, *, version: int | None = None,
               label: str | None = None) -> list:
        """The ModelVersionStatus of each version (or of the one asked for)."""
        document = self.request_json("GET", self._path(model, version, label))
        response = json_format.ParseDict(document, get_model_status_pb2.GetModelStatusResponse())
        return list(response.model_version_status)


class AppClient:
    """The base of typed per-model clients (each app keeps its own next to its code): a gRPC
    (or REST) client and the served model's name; examples go to its ``serving_default``
    signature."""

    def __init__(self, target: str = DEFAULT_GRPC_TARGET, *, model: str,
                 client: GrpcClient | RestClient | None = None, **client_options):
        self.client = client or GrpcClient(target, **client_options)
        self.model = model

    @classmethod
    def rest(cls, base_url: str = DEFAULT_REST_URL, **options):
        """The same client over the REST API."""
        client_options = {k: options.pop(k) for k in ("timeout_s", "retries", "backoff_s")
                          if k in options}
        return cls(client=RestClient(base_url, **client_options), **options)

    def serving_default(self, features: Sequence[Mapping[str, Any]]) -> PredictResult:
        """Predict on ``serving_default`` with one serialized tf.Example per feature dict."""
        examples = np.array([_example(f).SerializeToString() for f in features], dtype=object)
        return self.client.predict(self.model, {"examples": examples},
                                   signature="serving_default")

    def classify_examples(self, features: Sequence[Mapping[str, Any]], per_request: int,
                          outputs: Mapping[str, type]
                          ) -> tuple[list[str], dict[str, np.ndarray], int | None]:
        """``serving_default`` on ``features``, ``per_request`` examples per call: the class
        name of each, the ``outputs`` (name -> dtype) concatenated across calls, and the
        version that answered last."""
        labels, arrays, version = [], {name: [] for name in outputs}, None
        for start in range(0, len(features), per_request):
            result = self.serving_default(features[start:start + per_request])
            labels += [c.decode() if isinstance(c, bytes) else str(c)
                       for c in result.outputs["classes"]]
            for name, dtype in outputs.items():
                arrays[name].append(np.asarray(result.outputs[name], dtype=dtype))
            version = result.version
        return labels, {k: np.concatenate(v) for k, v in arrays.items()}, version
