"""The suite's model server under load and faults, as users run it: ``suite serve`` in its
own process on a real repository, 16 clients (8 gRPC, 8 REST) on loopback for 60 seconds
while the repository changes under it:

1. a new version is pushed (atomically, as the pipeline's pusher does);
2. a broken version appears (a SavedModel whose variables are missing);
3. the broken version and the new one are removed (a rollback to the first).

Meanwhile a slow client holds a REST connection open with half a request, and other clients
drop their connections mid-request. Every client request must succeed, the broken version
must be reported (GetModelStatus) and never answer, and the server's resident memory must
grow less than 10% over at least 20,000 requests after the rollback (and less than 15% over
the whole run, the three version loads included). The test prints its figures.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest

import suite  # noqa: F401
from tensorflow_serving.apis import (
    get_model_status_pb2, model_pb2, predict_pb2, prediction_service_pb2_grpc)

from serving.clients import GrpcClient, RestClient, ServingClientError
from serving.tensor_proto import to_tensor_proto

MODEL = "sensor_vibration"  # the pushed model's name (conftest.py)
SECONDS = 60.0
CLIENTS = 16
MIN_REQUESTS = 20_000  # answered after the rollback, while memory is watched
MAX_GROWTH = 0.10  # over those requests
# Over the whole run, three version loads included: each load of a SavedModel leaves a few
# MiB behind in a long-running process (TensorFlow's runtime; the servable itself is freed).
MAX_GROWTH_WITH_LOADS = 0.15
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END
SERVING = re.compile(r"gRPC (\S+:\d+), REST (http://\S+:\d+)")


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


@pytest.fixture
def served(pushed_model, tmp_path):
    """``suite serve`` on a copy of the pushed model's repository; yields (process, gRPC
    target, REST URL, base path) and stops it (SIGINT, as Ctrl-C) afterwards."""
    base = tmp_path / "models" / MODEL
    shutil.copytree(pushed_model.version_dir, base / str(pushed_model.version))
    command = [sys.executable, "-m", "apps.frontdoor", "serve", "--engine", "suite",
               "--base", str(base.parent), "--grpc-port", "0", "--rest-port", "0",
               "--poll-seconds", "0.2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, cwd=os.getcwd())
    log: list[str] = []
    found = None
    deadline = time.monotonic() + 120
    while found is None and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        log.append(line)
        found = SERVING.search(line)
    if found is None:
        process.kill()
        pytest.fail("suite serve did not start:\n" + "".join(log))
    drain = threading.Thread(target=lambda: log.extend(process.stdout), daemon=True)
    drain.start()
    try:
        yield process, found.group(1), found.group(2), base, log
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Load:
    """Clients that call ``serving_default`` until stopped; counts answers and failures."""

    def __init__(self, grpc_target: str, rest_url: str, examples: np.ndarray):
        self.grpc_target, self.rest_url, self.examples = grpc_target, rest_url, examples
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.requests = 0
        self.versions: dict[int, int] = {}  # version -> gRPC answers (REST does not say)
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._grpc if i % 2 == 0 else self._rest,
                                         name=f"client-{i}") for i in range(CLIENTS)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def _count(self, version: int | None = None, failure: str | None = None) -> None:
        with self.lock:
            if failure:
                self.failures.append(failure)
                return
            self.requests += 1
            if version is not None:
                self.versions[version] = self.versions.get(version, 0) + 1

    def _grpc(self) -> None:
        with GrpcClient(self.grpc_target, timeout_s=30, retries=0) as client:
            while not self.stop.is_set():
                try:
                    result = client.predict(MODEL, {"examples": self.examples})
                except ServingClientError as e:
                    self._count(failure=f"gRPC {e.code.name}: {e.message}")
                else:
                    self._count(result.version)

    def _rest(self) -> None:
        client = RestClient(self.rest_url, timeout_s=30, retries=0)
        try:
            while not self.stop.is_set():
                try:
                    outputs = client.predict(MODEL, {"examples": self.examples}).outputs
                except ServingClientError as e:
                    self._count(failure=f"REST {e.code.name}: {e.message}")
                else:
                    if len(next(iter(outputs.values()))) != len(self.examples):
                        self._count(failure=f"REST: wrong answer {outputs}")
                    else:
                        self._count()
        finally:
            client.close()

    def wait_for(self, requests: int, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while self.requests < requests and not self.failures:
            assert time.monotonic() < deadline, f"only {self.requests} requests answered"
            time.sleep(0.05)


def _until(condition, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _states(grpc_target: str) -> dict[int, object]:
    """Version -> ModelVersionStatus, as GetModelStatus reports them."""
    with GrpcClient(grpc_target) as client:
        return {s.version: s for s in client.status(MODEL)}


def _state(grpc_target: str, version: int) -> int | None:
    status = _states(grpc_target).get(version)
    return None if status is None else status.state


def _half_request(rest_url: str, model: str) -> tuple[socket.socket, bytes]:
    """A REST connection that sent the headers and half the body of a predict request;
    returns it and the other half."""
    host, port = rest_url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    body = b'{"instances": [' + b"1.0, " * 500 + b"1.0]}"
    sock.sendall(f"POST /v1/models/{model}:predict HTTP/1.1\r\nHost: {host}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                 .encode() + body[:len(body) // 2])
    return sock, body[len(body) // 2:]


def _disconnecting_clients(grpc_target: str, rest_url: str, examples: np.ndarray,
                           stop: threading.Event) -> list[int]:
    """Until stopped: gRPC calls cancelled after 1 ms, and REST requests whose client hangs
    up before (half-sent body) or right after sending. Returns [gRPC, REST] counts."""
    counts = [0, 0]
    channel = grpc.insecure_channel(grpc_target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    message = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=MODEL))
    message.inputs["examples"].CopyFrom(to_tensor_proto(examples))
    while not stop.is_set():
        future = stub.Predict.future(message, timeout=5)
        time.sleep(0.001)
        future.cancel()
        counts[0] += 1
        sock, _ = _half_request(rest_url, MODEL)
        sock.close()  # mid-body
        counts[1] += 1
        time.sleep(0.05)
    channel.close()
    return counts


def test_sixteen_clients_across_push_broken_version_and_rollback(served, pushed_model,
                                                                 push_copy):
    process, grpc_target, rest_url, base, log = served
    first = pushed_model.version
    examples = np.array(pushed_model.eval_examples[:4], dtype=object)
    slow, rest_of_body = _half_request(rest_url, MODEL)  # held open for the whole run
    stop_dropping = threading.Event()
    dropped: list[list[int]] = []
    dropper = threading.Thread(target=lambda: dropped.append(_disconnecting_clients(
        grpc_target, rest_url, examples, stop_dropping)))
    started = time.monotonic()
    with Load(grpc_target, rest_url, examples) as load:
        load.wait_for(2_000)  # warm: every client connected, every code path run once
        rss_warm = _rss_bytes(process.pid)
        dropper.start()

        new = push_copy(str(base))
        _until(lambda: _state(grpc_target, new) == AVAILABLE, "the pushed version to serve")
        time.sleep(5)

        broken = new + 1
        staging = base / ".staging-broken"
        shutil.copytree(base / str(new), staging)
        shutil.rmtree(staging / "variables")
        os.rename(staging, base / str(broken))
        _until(lambda: _state(grpc_target, broken) == END, "the broken version's report")
        report = _states(grpc_target)[broken].status.error_message
        time.sleep(5)

        shutil.rmtree(base / str(broken))
        shutil.rmtree(base / str(new))
        _until(lambda: _state(grpc_target, new) == END and _state(grpc_target, first)
               == AVAILABLE, "the rollback to the first version")

        rss_before, requests_before = _rss_bytes(process.pid), load.requests
        while time.monotonic() - started < SECONDS or load.requests - requests_before \
                < MIN_REQUESTS:
            assert not load.failures, load.failures[:5]
            assert time.monotonic() - started < 4 * SECONDS, \
                f"only {load.requests - requests_before} requests in {4 * SECONDS:.0f} s"
            time.sleep(0.5)
        stop_dropping.set()
        dropper.join()
        rss_after, requests_after = _rss_bytes(process.pid), load.requests
    # The slow client held its connection all along, and is answered when it finishes.
    slow.settimeout(30)
    slow.sendall(rest_of_body)
    slow_answer = slow.recv(64)
    slow.close()
    elapsed = time.monotonic() - started
    growth, overall = rss_after / rss_before - 1, rss_after / rss_warm - 1
    print(f"\n{load.requests} requests from {CLIENTS} clients in {elapsed:.0f} s "
          f"({load.requests / elapsed:.0f}/s), {len(load.failures)} failed; gRPC answers by "
          f"version {dict(sorted(load.versions.items()))}; dropped connections (gRPC, REST) "
          f"{dropped[0]}; server RSS warm {rss_warm / 2**20:.0f} MiB, after the rollback "
          f"{rss_before / 2**20:.0f} MiB, at the end {rss_after / 2**20:.0f} MiB: "
          f"{growth:+.1%} over the last {requests_after - requests_before} requests, "
          f"{overall:+.1%} over the run; broken "
          f"version {broken}: {report!r}")

    assert load.failures == []
    assert requests_after - requests_before >= MIN_REQUESTS
    assert set(load.versions) == {first, new}  # the broken version never answered
    assert load.versions[new] > 0 and min(dropped[0]) > 0
    assert f"loading model {MODEL} version {broken}" in report
    assert (_state(grpc_target, first), _state(grpc_target, new),
            _state(grpc_target, broken)) == (AVAILABLE, END, END)
    assert slow_answer.startswith(b"HTTP/1.1 400"), slow_answer  # floats are not examples
    assert growth < MAX_GROWTH and overall < MAX_GROWTH_WITH_LOADS
    assert process.poll() is None, "".join(log[-20:])
    assert "Traceback" not in "".join(log), "".join(log[-40:])
