"""``<app> submit``: the compiled spec posted to a Kubeflow Pipelines API (a real HTTP server
on loopback standing in for the cluster's), and every way a submission can fail without a
network giving one line and exit status 2."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import suite  # noqa: F401
from apps.sensor_vibration import cli

ARGS = ["--image", "example.com/suite:1", "--preset", "tiny"]


class _KfpApi(BaseHTTPRequestHandler):
    """``POST /apis/v2beta1/runs``: records the body, answers a run id (or ``status``)."""

    received: list = []
    status = 200

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, dict(self.headers), json.loads(body)))
        answer = (json.dumps({"run_id": "run-42", "display_name": "x"}) if self.status == 200
                  else "permission denied: no token")
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(answer.encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def kfp_api():
    _KfpApi.received, _KfpApi.status = [], 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KfpApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _KfpApi
    server.shutdown()


def test_submit_posts_the_compiled_spec_and_prints_the_run_url(kfp_api, capsys):
    host, api = kfp_api
    assert cli.main(["submit", "--kfp-host", host, "--kfp-token", "t0ken",
                     "--pipeline-root", "gs://bucket/suite", *ARGS]) == 0
    assert capsys.readouterr().out.strip().endswith(f"{host}/#/runs/details/run-42")
    [(path, headers, body)] = api.received
    assert path == "/apis/v2beta1/runs"
    assert headers["Authorization"] == "Bearer t0ken"
    spec = body["pipeline_spec"]
    assert spec["pipelineInfo"]["name"] == "sensor-vibration"
    # The app's layout under --pipeline-root, as `compile` writes it.
    assert body["runtime_config"] == {"pipeline_root": "gs://bucket/suite/sensor_vibration/"
                                                       "pipeline_root"}
    # The spec is the app's whole pipeline, on the image asked for.
    tasks = spec["root"]["dag"]["tasks"]
    assert {"Trainer", "Evaluator", "Pusher", "RunReport"} <= set(tasks)
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()
              if "container" in e}
    assert images == {"example.com/suite:1"}


def test_a_refusing_kfp_host_is_one_line_and_status_2(kfp_api, capsys):
    host, api = kfp_api
    api.status = 403
    assert cli.main(["submit", "--kfp-host", host, *ARGS]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "answered 403" in err and "KF_PIPELINES_TOKEN" in err


def test_an_unreachable_kfp_host_is_one_line_and_status_2(capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert cli.main(["submit", "--kfp-host", f"http://127.0.0.1:{port}", *ARGS]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"cannot reach Kubeflow Pipelines at http://127.0.0.1:{port}" \
        in err


def test_vertex_without_credentials_or_bucket_is_one_line_and_status_2(tmp_path, monkeypatch,
                                                                       capsys):
    # No credentials anywhere: no key file, no gcloud login, no metadata server.
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    assert cli.main(["submit", "--project", "p", "--region", "europe-west4",
                     "--pipeline-root", "gs://bucket/suite", *ARGS]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no Google Cloud credentials" in err
    assert cli.main(["submit", "--project", "p", "--pipeline-root", "/local/root", *ARGS]) == 2
    assert "expected --pipeline-root gs://BUCKET/..." in capsys.readouterr().err


def test_submit_needs_exactly_one_destination(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["submit", *ARGS])
    assert exit_.value.code == 2
    assert "one of the arguments --project --kfp-host is required" in capsys.readouterr().err
