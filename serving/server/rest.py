"""REST front end: TF Serving's RESTful API on the standard library's ThreadingHTTPServer.

Routes (model names and labels are URL-decoded, paths case-insensitive, as in TF Serving):

    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]            GetModelStatus as JSON
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata   GetModelMetadata as JSON
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict    instances / inputs
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:classify   examples (+ context)
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:regress
    GET  {monitoring path}                                        Prometheus metrics text

Errors are ``{"error": "<message>"}`` with TF Serving's HTTP status for the canonical code;
a body above the size limit is refused with 413 before it is read.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import (
    classification_pb2, get_model_metadata_pb2, get_model_status_pb2, model_pb2,
    regression_pb2)

from serving.server.core import DEFAULT_SIGNATURE, ServingCore
from serving.server.errors import ServingError, invalid
from serving.server.rest_json import (
    classification_json, classify_regress_input, parse_json_object, predict_inputs,
    predict_response_json, regression_json, signature_name)

log = logging.getLogger("serving.server")

_DRAIN_BYTES = 16 << 20

_SPEC = r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
PREDICTION_PATH = re.compile(_SPEC + r":(classify|regress|predict)", re.IGNORECASE)
STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE)


def _model_spec(name: str | None, version: str | None, label: str | None) -> model_pb2.ModelSpec:
    """The ModelSpec of a REST path's name, version and label."""
    if not name:
        raise invalid("Missing model name in request.")
    spec = model_pb2.ModelSpec(name=unquote(name))
    if version is not None:
        spec.version.value = int(version)
    if label is not None:
        spec.version_label = unquote(label)
    return spec


def _json(message, *, field_names: bool) -> dict:
    """A message as a JSON-ready dict, default values included (as TF Serving prints)."""
    return json_format.MessageToDict(message, including_default_value_fields=True,
                                     preserving_proto_field_name=field_names)


class _Handler(BaseHTTPRequestHandler):
    """One connection; ``core``, ``max_request_bytes`` and ``monitoring_path`` are set on a
    subclass per server."""

    protocol_version = "HTTP/1.1"
    server_version = "suite-model-server"
    core: ServingCore
    max_request_bytes: int
    monitoring_path: str | None

    def setup(self) -> None:
        super().setup()
        # Headers and body are two writes: without this, Nagle's algorithm and the client's
        # delayed ACK hold every response back ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (stdlib signature)
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 (stdlib names)
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _body(self) -> bytes:
        """The request body, refused (413) above the size limit."""
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            size = int(length)
        except ValueError:
            raise invalid(f"Malformed Content-Length: {length!r}") from None
        if size > self.max_request_bytes:
            self._discard(size)
            raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"Request body of {size} bytes is larger than the server's limit "
                               f"of {self.max_request_bytes} bytes", http_status=413)
        body = self.rfile.read(size)
        if len(body) != size:
            self.close_connection = True
            raise invalid(f"Request body ended after {len(body)} of {size} bytes")
        return body

    def _discard(self, size: int) -> None:
        """Reads and drops a refused body (up to _DRAIN_BYTES, so that the client gets the
        answer rather than a reset connection); larger ones end the connection."""
        if size > _DRAIN_BYTES:
            self.close_connection = True
            return
        while size > 0:
            chunk = self.rfile.read(min(size, 1 << 16))
            if not chunk:
                break
            size -= len(chunk)

    def _dispatch(self, method: str) -> None:
        """Routes one request and answers it, whatever happens."""
        path = urlsplit(self.path).path
        if method == "GET" and self.monitoring_path and path == self.monitoring_path:
            self._send(200, self.core.metrics.prometheus_text(), "text/plain; version=0.0.4")
            return
        model, api = "", method.lower()
        try:
            body = self._body() if method == "POST" else b""
            predict = PREDICTION_PATH.fullmatch(path) if method == "POST" else None
            status = STATUS_PATH.fullmatch(path) if method == "GET" else None
            if predict:
                name, version, label, api = predict.groups()
                spec = _model_spec(name, version, label)
                model, api = spec.name, api.lower()
                text = getattr(self, f"_{api}")(spec, body)
            elif status:
                name, version, label, metadata = status.groups()
                api = "metadata" if metadata else "status"
                spec = _model_spec(name, version, label)
                model = spec.name
                text = self._metadata(spec) if metadata else self._status(spec)
            elif path.lower().startswith("/v1/"):
                raise invalid(f"Malformed request: {method} {path}")
            else:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"No such endpoint: {path}")
        except ServingError as e:
            self.core.record_request(model, api, "REST", e.code)
            self._send(e.http_status, json.dumps({"error": e.message}))
            return
        except Exception as e:  # the server answers, whatever the request
            log.exception("REST %s %s failed", method, path)
            self.core.record_request(model, api, "REST", grpc.StatusCode.INTERNAL)
            self._send(500, json.dumps({"error": f"{type(e).__name__}: {e}"}))
            return
        self.core.record_request(model, api, "REST", grpc.StatusCode.OK)
        self._send(200, text)

    def _send(self, status: int, text: str, content_type: str = "application/json") -> None:
        """Writes one response."""
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _predict(self, spec: model_pb2.ModelSpec, body: bytes) -> str:
        """POST ...:predict."""
        document = parse_json_object(body)
        signature = signature_name(document) or DEFAULT_SIGNATURE
        servable = self.core.resolve(spec)
        inputs, fmt = predict_inputs(document, self.core.signature_inputs(servable, signature))
        return predict_response_json(self.core.run_predict(servable, signature, inputs), fmt)

    def _examples_request(self, request, body: bytes):
        """Fills a classify/regress request from a JSON body."""
        document = parse_json_object(body)
        request.model_spec.signature_name = signature_name(document)
        classify_regress_input(document, request.input)
        return request

    def _classify(self, spec: model_pb2.ModelSpec, body: bytes) -> str:
        """POST ...:classify."""
        request = self._examples_request(
            classification_pb2.ClassificationRequest(model_spec=spec), body)
        return classification_json(self.core.classify(request).result)

    def _regress(self, spec: model_pb2.ModelSpec, body: bytes) -> str:
        """POST ...:regress."""
        request = self._examples_request(regression_pb2.RegressionRequest(model_spec=spec), body)
        return regression_json(self.core.regress(request).result)

    def _status(self, spec: model_pb2.ModelSpec) -> str:
        """GET /v1/models/{name}[...]: GetModelStatus as JSON."""
        response = self.core.get_model_status(
            get_model_status_pb2.GetModelStatusRequest(model_spec=spec))
        return json.dumps(_json(response, field_names=False), indent=1)

    def _metadata(self, spec: model_pb2.ModelSpec) -> str:
        """GET .../metadata: the model spec and every SignatureDef, as TF Serving writes them."""
        response = self.core.get_model_metadata(get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=spec, metadata_field=["signature_def"]))
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_defs)
        return json.dumps({"model_spec": _json(response.model_spec, field_names=True),
                           "metadata": {"signature_def": _json(signature_defs,
                                                               field_names=True)}}, indent=1)


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with a deeper accept queue and quiet connection errors."""
    daemon_threads = True
    request_queue_size = 128  # many clients connecting at once are not refused

    def handle_error(self, request, client_address) -> None:
        # A client that hangs up mid-request is its own problem, not the server's.
        log.debug("connection from %s failed", client_address, exc_info=True)


class RestServer:
    """The REST API of one ServingCore on ``host:port`` (port 0: an ephemeral port)."""

    def __init__(self, core: ServingCore, host: str, port: int, *, max_request_bytes: int,
                 monitoring_path: str | None):
        handler = type("Handler", (_Handler,), {
            "core": core, "max_request_bytes": max_request_bytes,
            "monitoring_path": monitoring_path})
        self.httpd = _HTTPServer((host, port), handler)
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="rest",
                                        daemon=True)

    @property
    def port(self) -> int:
        """The bound port."""
        return self.httpd.server_address[1]

    def start(self) -> None:
        """Starts answering requests in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stops answering and closes the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()
