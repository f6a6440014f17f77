"""The suite's model server: TF Serving's gRPC and REST contracts on a model repository."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent import futures
from dataclasses import dataclass

import grpc

from serving.repository import (
    PROMETHEUS_PATH, BatchingConfig, ModelEntry, batching_config, model_entries,
    read_batching_parameters, read_model_server_config, read_monitoring_config)
from serving.server.core import ServingCore
from serving.server.grpc_service import add_services
from serving.server.metrics import BatchingStats, Metrics
from serving.server.request_log import RequestLog
from serving.server.rest import RestServer

log = logging.getLogger("serving.server")

DEFAULT_MAX_REQUEST_BYTES = 64 << 20


@dataclass(frozen=True)
class ServerOptions:
    """How the server listens. Ports 0 pick free ephemeral ports; ``rest_port=None`` turns
    REST off. ``host`` is loopback unless told otherwise. With ``tls_cert`` and ``tls_key``
    (PEM files) gRPC is served over TLS. With ``log_requests`` (a file) a sample of the
    answered requests (``log_sample_rate``, drawn with ``log_seed``) is appended to it as
    serialized tf.Examples (``serving.server.request_log``)."""

    host: str = "127.0.0.1"
    grpc_port: int = 8500
    rest_port: int | None = 8501
    poll_seconds: float = 1.0
    batching: BatchingConfig | None = None  # None: every request runs on its own
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    grpc_threads: int = 8  # Classify / Regress run on these; Predict runs on the loop
    tls_cert: str | None = None
    tls_key: str | None = None
    monitoring_path: str | None = PROMETHEUS_PATH
    log_requests: str | None = None
    log_sample_rate: float = 1.0
    log_seed: int = 0


class ModelServer:
    """Serves ``entries`` over gRPC and REST until ``stop()``; also a context manager."""

    def __init__(self, entries: list[ModelEntry], options: ServerOptions = ServerOptions()):
        if bool(options.tls_cert) != bool(options.tls_key):
            raise ValueError("TLS needs both a certificate and a key file")
        self.options = options
        request_log = (RequestLog(options.log_requests, options.log_sample_rate,
                                  options.log_seed) if options.log_requests else None)
        self.core = ServingCore(entries, batching=options.batching,
                                poll_seconds=options.poll_seconds, metrics=Metrics(),
                                request_log=request_log)
        self._grpc: grpc.aio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._pool: futures.ThreadPoolExecutor | None = None
        self._rest: RestServer | None = None
        self.grpc_port = 0
        self.rest_port: int | None = None

    @classmethod
    def from_files(cls, model_config_file: str, batching_parameters_file: str | None = None,
                   monitoring_config_file: str | None = None, **options) -> ModelServer:
        """A server configured by the same files tensorflow_model_server takes: batching is
        on only with a batching parameters file, metrics only if the monitoring config
        enables them."""
        entries = model_entries(read_model_server_config(model_config_file))
        if batching_parameters_file:
            options["batching"] = batching_config(
                read_batching_parameters(batching_parameters_file))
        if monitoring_config_file:
            prometheus = read_monitoring_config(monitoring_config_file).prometheus_config
            options["monitoring_path"] = (prometheus.path or PROMETHEUS_PATH) \
                if prometheus.enable else None
        return cls(entries, ServerOptions(**options))

    def start(self) -> ModelServer:
        """Loads the models, then starts gRPC and REST; returns self."""
        opts = self.options
        self.core.start()
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, name="grpc-loop",
                                             daemon=True)
        self._loop_thread.start()
        self._pool = futures.ThreadPoolExecutor(max_workers=opts.grpc_threads,
                                                thread_name_prefix="grpc")
        try:
            self.grpc_port = self._on_loop(self._start_grpc())
        except Exception:
            self.stop(grace=0)
            raise
        if opts.rest_port is not None:
            self._rest = RestServer(self.core, opts.host, opts.rest_port,
                                    max_request_bytes=opts.max_request_bytes,
                                    monitoring_path=opts.monitoring_path)
            self.rest_port = self._rest.port
            self._rest.start()
        log.info("serving gRPC on %s:%s%s, REST on %s", opts.host, self.grpc_port,
                 " (TLS)" if opts.tls_cert else "",
                 f"{opts.host}:{self.rest_port}" if self._rest else "off")
        return self

    async def _start_grpc(self) -> int:
        """Creates, binds and starts the gRPC server on the loop; returns its port."""
        opts = self.options
        self._grpc = grpc.aio.server(
            options=[("grpc.max_receive_message_length", opts.max_request_bytes),
                     ("grpc.max_send_message_length", -1),
                     ("grpc.so_reuseport", 0)])
        add_services(self._grpc, self.core, self._pool)
        address = f"{opts.host}:{opts.grpc_port}"
        if opts.tls_cert:
            with open(opts.tls_key, "rb") as key, open(opts.tls_cert, "rb") as cert:
                credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
            port = self._grpc.add_secure_port(address, credentials)
        else:
            port = self._grpc.add_insecure_port(address)
        if not port:
            raise OSError(f"cannot bind gRPC to {address}")
        await self._grpc.start()
        return port

    def _on_loop(self, coroutine):
        """Runs a coroutine on the gRPC loop and returns its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def stop(self, grace: float = 2.0) -> None:
        """Stops accepting requests, lets those in flight finish, and stops polling."""
        if self._rest is not None:
            self._rest.stop()
        if self._loop is not None:
            if self._grpc is not None:
                self._on_loop(self._grpc.stop(grace))
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop_thread.join()
            self._loop.close()
            self._loop = None
        if self._pool is not None:
            self._pool.shutdown()
        self.core.stop()

    def wait(self) -> None:
        """Blocks until the gRPC server terminates."""
        self._on_loop(self._grpc.wait_for_termination())

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def grpc_target(self) -> str:
        """``host:port`` of the gRPC endpoint."""
        return f"{self.options.host}:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        """Base URL of the REST endpoint."""
        return f"http://{self.options.host}:{self.rest_port}"

    def batching_stats(self, model: str) -> BatchingStats:
        """How requests to ``model`` were batched (see ``Metrics.batching``)."""
        return self.core.metrics.batching(model)

    def served_versions(self, model: str) -> list[int]:
        """The AVAILABLE versions of ``model``."""
        return self.core.manager.served_versions(model)
