"""Serving benchmark: the in-process SavedModel call vs the suite's model server (gRPC, REST).

For the pushed model of each app found under the repository base path (the newest
version of ``<base>/<model>/``), with the model's own warmup request (one example) as the
payload, measures p50 / p99 latency and throughput of

- (a) the SavedModel's serving_default called in this process (1 client; 16 threads; and
  one call on a batch of 16, the reference for batched throughput),
- (b) gRPC Predict and (c) REST :predict against ``suite serve --engine suite`` started in
  its own process on loopback, with 1 and with 16 concurrent clients, batching off and on
  (max_batch_size 16 = the number of clients, batch_timeout 2 ms),
- the same served calls (16 clients, batching on) while a new version is pushed and
  hot-swapped, counting failed requests,
- a bare gRPC echo server (the server's stack, grpc.aio, answering without a model) in
  its own process, at 1 and 16 clients: what Python gRPC alone costs on this machine, the
  floor under the served latency and the ceiling over the served throughput,

and prints a table and the three targets: gRPC p50 overhead at batch 1 <= 1 ms; served
throughput with batching at 16 clients >= 0.7x the in-process batched throughput; no
failed request during a swap. The repository is copied to a temporary folder first, so the
swaps never touch it.

    .venv/bin/python benchmarks/model_serving.py [--base workspace/serving/models] [--seconds 4]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The repository root first: run as a script, this file's own folder comes first on the
# path, and its name would shadow the ``serving`` package.
sys.path.insert(0, REPO_ROOT)

import suite  # noqa: E402,F401  (Keras policy before TensorFlow)
import numpy as np  # noqa: E402

from serving.repository import DEFAULT_BASE, discover_models  # noqa: E402
from serving.versions import list_versions  # noqa: E402

CLIENTS = 16


@dataclass
class Row:
    """One measured configuration."""

    app: str
    path: str
    clients: int
    batching: str
    p50_ms: float
    p99_ms: float
    requests_per_s: float
    rows_per_s: float
    failed: int


def measure(clients: int, seconds: float, make_call: Callable[[], Callable[[], int]],
            stop: threading.Event | None = None) -> tuple[list[float], int, int, float]:
    """Runs ``clients`` threads, each calling its own ``make_call()`` in a loop for
    ``seconds`` (or until ``stop``); returns latencies (s), rows, failures, wall time."""
    latencies: list[float] = []
    totals = {"rows": 0, "failed": 0}
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client() -> None:
        call = make_call()
        mine, rows, failed = [], 0, 0
        start.wait()
        while (stop is None and time.perf_counter() < deadline[0]) or (
                stop is not None and not stop.is_set()):
            began = time.perf_counter()
            try:
                rows += call()
            except Exception:  # any failure counts; the benchmark goes on
                failed += 1
                continue
            mine.append(time.perf_counter() - began)
        with lock:
            latencies.extend(mine)
            totals["rows"] += rows
            totals["failed"] += failed

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    deadline[0] = time.perf_counter() + seconds
    began = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    return latencies, totals["rows"], totals["failed"], time.perf_counter() - began


def row(app: str, path: str, clients: int, batching: str, result) -> Row:
    """Summarizes one measurement."""
    latencies, rows, failed, wall = result
    ms = np.array(latencies) * 1e3 if latencies else np.array([np.nan])
    return Row(app, path, clients, batching, float(np.percentile(ms, 50)),
               float(np.percentile(ms, 99)), len(latencies) / wall, rows / wall, failed)


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(base: str, batching: bool) -> tuple[subprocess.Popen, int, int]:
    """``suite serve --engine suite`` in its own process; returns it once it answers."""
    from serving.clients import GrpcClient, ServingClientError

    grpc_port, rest_port = free_port(), free_port()
    command = [sys.executable, "-m", "apps.frontdoor", "serve", "--engine", "suite", "--base", base,
               "--grpc-port", str(grpc_port), "--rest-port", str(rest_port),
               "--poll-seconds", "0.5", "--max-batch-size", str(CLIENTS)] + (
                   [] if batching else ["--no-batching"])
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    with GrpcClient(f"127.0.0.1:{grpc_port}", timeout_s=5, retries=0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{' '.join(command)} exited with {process.returncode}")
            try:
                client.status(discover_models(base)[0])
                return process, grpc_port, rest_port
            except ServingClientError:
                time.sleep(0.5)
    process.kill()
    raise TimeoutError("the model server did not start within 300 s")


def echo_server(port: int) -> None:
    """A bare gRPC PredictionService on the server's stack (grpc.aio, one event loop) that
    answers every Predict with the same small response and runs no model: what gRPC alone
    costs in Python on this machine, the floor under the suite's server."""
    import asyncio

    import grpc
    from tensorflow.core.framework import tensor_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    class Echo(prediction_service_pb2_grpc.PredictionServiceServicer):
        def __init__(self) -> None:
            self.response = predict_pb2.PredictResponse()
            self.response.model_spec.name = "echo"
            scores = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[0.5])
            scores.tensor_shape.dim.add().size = 1
            self.response.outputs["scores"].CopyFrom(scores)

        async def Predict(self, request, context):  # noqa: N802
            return self.response

    async def serve() -> None:
        server = grpc.aio.server()
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Echo(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(serve())


def start_echo_server() -> tuple[subprocess.Popen, int]:
    """``echo_server`` in its own process; returns it once it answers."""
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    port = free_port()
    process = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--echo-server",
                                str(port)], cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        stub.Predict(predict_pb2.PredictRequest(), timeout=120, wait_for_ready=True)
    return process, port


def grpc_call(port: int, request) -> Callable[[], Callable[[], int]]:
    """A factory of per-client gRPC Predict calls (one channel per client)."""
    from serving.clients import GrpcClient

    def make() -> Callable[[], int]:
        client = GrpcClient(f"127.0.0.1:{port}", timeout_s=30, retries=0)

        def call() -> int:
            client.predict_request(request)
            return 1
        return call
    return make


def rest_call(port: int, model: str, body: bytes) -> Callable[[], Callable[[], int]]:
    """A factory of per-client REST :predict calls (one keep-alive connection per client)."""
    def make() -> Callable[[], int]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        path = f"/v1/models/{model}:predict"

        def call() -> int:
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}")
            return 1
        return call
    return make


def rest_body(request) -> bytes:
    """The warmup PredictRequest as a REST columnar body (bytes as {"b64": ...})."""
    import tensorflow as tf

    inputs = {}
    for name, proto in request.inputs.items():
        array = tf.make_ndarray(proto)
        if array.dtype == object:
            array = np.vectorize(lambda v: {"b64": base64.b64encode(v).decode()},
                                 otypes=[object])(array)
        inputs[name] = array.tolist()
    signature = request.model_spec.signature_name or "serving_default"
    return json.dumps({"signature_name": signature, "inputs": inputs}).encode()


def swap_during(base: str, model: str, grpc_port: int, stop: threading.Event,
                versions: list[int]) -> threading.Thread:
    """Pushes a copy of the newest version as a new version after 1 s, waits until the
    server serves only it, lets the load run 1 s more, then sets ``stop``."""
    from tensorflow_serving.apis.get_model_status_pb2 import ModelVersionStatus

    from serving.versions import push_atomically
    from serving.clients import GrpcClient

    def run() -> None:
        try:
            time.sleep(1.0)
            model_base = os.path.join(base, model)
            old = list_versions(model_base)[-1]
            copy = os.path.join(os.path.dirname(base), f"swap-{time.time_ns()}")
            shutil.copytree(os.path.join(model_base, str(old)), copy)
            with open(os.path.join(copy, "assets.extra", "swap_marker.txt"), "w") as f:
                f.write(f"benchmark copy of version {old}\n")
            new = int(push_atomically(copy, model_base)[0])
            shutil.rmtree(copy)
            with GrpcClient(f"127.0.0.1:{grpc_port}", timeout_s=5) as client:
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    states = {s.version: s.state for s in client.status(model)}
                    if (states.get(new) == ModelVersionStatus.AVAILABLE
                            and states.get(old) == ModelVersionStatus.END):
                        break
                    time.sleep(0.1)
            versions.extend([old, new])
            time.sleep(1.0)
        finally:
            stop.set()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def benchmark_model(base: str, model: str, seconds: float) -> list[Row]:
    """Every configuration for one app's newest pushed version."""
    import tensorflow as tf

    from serving.warmup import read_warmup_requests

    version = list_versions(os.path.join(base, model))[-1]
    version_dir = os.path.join(base, model, str(version))
    logs = [log for log in read_warmup_requests(version_dir)
            if log.WhichOneof("log_type") == "predict_log"]
    if not logs:
        raise SystemExit(f"{version_dir}: no Predict warmup request to use as the payload")
    request = logs[0].predict_log.request
    request.model_spec.name = model
    request.model_spec.ClearField("version")
    signature = request.model_spec.signature_name or "serving_default"
    arrays = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
    batch = len(next(iter(arrays.values())))
    print(f"{model}: version {version}, signature {signature}, {batch} example(s) per request",
          flush=True)

    rows: list[Row] = []
    fn = tf.saved_model.load(version_dir).signatures[signature]

    def inprocess(repeat: int) -> Callable[[], Callable[[], int]]:
        tensors = {k: tf.constant(np.concatenate([v] * repeat)) for k, v in arrays.items()}

        def make() -> Callable[[], int]:
            def call() -> int:
                for output in fn(**tensors).values():
                    output.numpy()
                return batch * repeat
            return call
        return make

    inprocess(CLIENTS)()()  # trace and warm up both batch sizes
    inprocess(1)()()
    rows.append(row(model, "in-process", 1, "-", measure(1, seconds, inprocess(1))))
    rows.append(row(model, "in-process", CLIENTS, "-", measure(CLIENTS, seconds, inprocess(1))))
    rows.append(row(model, f"in-process, batch {CLIENTS}", 1, "-",
                    measure(1, seconds, inprocess(CLIENTS))))

    process, port = start_echo_server()
    try:
        make = grpc_call(port, request)
        measure(CLIENTS, 0.5, make)  # connect and warm up
        for clients in (1, CLIENTS):
            rows.append(row(model, "gRPC echo, no model", clients, "-",
                            measure(clients, seconds, make)))
    finally:
        process.terminate()
        process.wait(timeout=60)

    body = rest_body(request)
    with tempfile.TemporaryDirectory(prefix="serving-benchmark-") as tmp:
        served = os.path.join(tmp, "models")
        shutil.copytree(version_dir, os.path.join(served, model, str(version)))
        for batching in (False, True):
            label = "on" if batching else "off"
            process, grpc_port, rest_port = start_server(served, batching)
            try:
                for path, make in (("gRPC", grpc_call(grpc_port, request)),
                                   ("REST", rest_call(rest_port, model, body))):
                    measure(CLIENTS, 0.5, make)  # connect and warm up
                    for clients in (1, CLIENTS):
                        rows.append(row(model, path, clients, label,
                                        measure(clients, seconds, make)))
                if batching:
                    for path, make in (("gRPC", grpc_call(grpc_port, request)),
                                       ("REST", rest_call(rest_port, model, body))):
                        stop, versions = threading.Event(), []
                        swapper = swap_during(served, model, grpc_port, stop, versions)
                        result = measure(CLIENTS, 0, make, stop=stop)
                        swapper.join()
                        rows.append(row(model, f"{path} during swap {versions[0]}->"
                                        f"{versions[1]}" if versions else f"{path} during swap",
                                        CLIENTS, label, result))
            finally:
                process.terminate()
                process.wait(timeout=60)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Benchmarks every app model under --base and prints the table and the targets."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default=os.path.join(REPO_ROOT, DEFAULT_BASE),
                        help="model repository (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=4.0, help="per configuration")
    parser.add_argument("--echo-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.echo_server:
        echo_server(args.echo_server)
        return 0
    models = discover_models(args.base)
    if not models:
        print(f"no pushed model under {args.base}: run `make demo` first (it trains the "
              "sensor-vibration model and pushes it to workspace/serving/models/)")
        return 1
    from suite.quiet import quiet

    quiet()
    rows = [r for model in models for r in benchmark_model(args.base, model, args.seconds)]
    print(f"\n{'app':<17} {'path':<28} {'clients':>7} {'batching':>8} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'req/s':>8} {'rows/s':>8} {'failed':>6}")
    for r in rows:
        print(f"{r.app:<17} {r.path:<28} {r.clients:>7} {r.batching:>8} {r.p50_ms:>8.2f} "
              f"{r.p99_ms:>8.2f} {r.requests_per_s:>8.0f} {r.rows_per_s:>8.0f} {r.failed:>6}")
    print()
    for model in models:
        mine = {(r.path, r.clients, r.batching): r for r in rows if r.app == model}
        overhead = mine[("gRPC", 1, "off")].p50_ms - mine[("in-process", 1, "-")].p50_ms
        batched = mine[(f"in-process, batch {CLIENTS}", 1, "-")].rows_per_s
        ratio = mine[("gRPC", CLIENTS, "on")].rows_per_s / batched
        failed = sum(r.failed for r in rows if r.app == model and "swap" in r.path)
        echo = mine[("gRPC echo, no model", CLIENTS, "-")].requests_per_s / batched
        print(f"{model}: gRPC p50 overhead at batch 1: {overhead:.2f} ms (target <= 1 ms: "
              f"{'met' if overhead <= 1 else 'NOT met'}); gRPC throughput with batching at "
              f"{CLIENTS} clients: {ratio:.2f}x the in-process batch-{CLIENTS} throughput "
              f"(target >= 0.7x: {'met' if ratio >= 0.7 else 'NOT met'}); failed requests "
              f"during swaps: {failed} (target 0: {'met' if failed == 0 else 'NOT met'}). "
              f"A bare Python gRPC echo (no model) at {CLIENTS} clients answers {echo:.2f}x "
              f"the in-process batch-{CLIENTS} rows/s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
