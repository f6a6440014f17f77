"""Submitting a compiled pipeline spec: to Vertex AI Pipelines, or to a Kubeflow Pipelines
endpoint.

Vertex AI goes through google-cloud-aiplatform's ``PipelineJob`` (imported only here, when
asked for). Kubeflow Pipelines goes through its REST API (``POST /apis/v2beta1/runs`` with
the spec inline), so no KFP SDK is needed. Each returns the run's URL. What stops a
submission (no credentials, a missing package, an unreachable or refusing host) is a
``SubmitError`` whose message is one line that says what to do.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request


class SubmitError(RuntimeError):
    """A submission that could not be made; the message says why and what to do."""


def _job(path: str) -> dict:
    """The compiled PipelineJob (``displayName``, ``pipelineSpec``, ``runtimeConfig``)."""
    with open(path) as f:
        return json.load(f)


def _root(job: dict) -> str:
    """Where the compiled job's runs write (``<app> compile --pipeline-root``'s layout)."""
    return job.get("runtimeConfig", {}).get("gcsOutputDirectory", "")


def submit_vertex(spec_path: str, *, project: str, region: str,
                  service_account: str | None = None) -> str:
    """Submits the spec as a Vertex AI PipelineJob; returns the run's console URL."""
    job_spec = _job(spec_path)
    pipeline_root = _root(job_spec)
    if not pipeline_root.startswith("gs://"):
        raise SubmitError(f"pipeline root {pipeline_root or '(none)'}: Vertex AI runs write to "
                          "Cloud Storage; expected --pipeline-root gs://BUCKET/...")
    try:
        from google.api_core import exceptions as api_exceptions
        from google.auth import exceptions as auth_exceptions
        from google.cloud import aiplatform
    except ImportError as e:
        raise SubmitError(f"Vertex AI submission needs google-cloud-aiplatform ({e}); "
                          "install the locked stack with `make bootstrap`") from None
    try:
        aiplatform.init(project=project, location=region)
        job = aiplatform.PipelineJob(
            display_name=job_spec["displayName"],
            template_path=spec_path, pipeline_root=pipeline_root, enable_caching=True)
        job.submit(service_account=service_account)
    except auth_exceptions.DefaultCredentialsError:
        raise SubmitError("no Google Cloud credentials: run `gcloud auth application-default "
                          "login`, or set GOOGLE_APPLICATION_CREDENTIALS to a service "
                          "account key file") from None
    except (auth_exceptions.GoogleAuthError, api_exceptions.GoogleAPIError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SubmitError(f"Vertex AI refused the pipeline job in project {project}, region "
                          f"{region}: {first}") from None
    return job._dashboard_uri()


def submit_kfp(spec_path: str, *, host: str, token: str = "", timeout_s: float = 30.0) -> str:
    """Creates a run of the spec on the Kubeflow Pipelines API at ``host``; returns the
    run's URL in the KFP UI. ``token`` (or $KF_PIPELINES_TOKEN) is sent as a bearer token."""
    job = _job(spec_path)
    runtime = {k: v for k, v in job.get("runtimeConfig", {}).items() if k == "parameterValues"}
    if _root(job):
        runtime["pipeline_root"] = _root(job)
    body = {"display_name": job["displayName"],
            "pipeline_spec": job["pipelineSpec"], "runtime_config": runtime}
    base = host.rstrip("/")
    request = urllib.request.Request(
        f"{base}/apis/v2beta1/runs", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json"})
    token = token or os.environ.get("KF_PIPELINES_TOKEN", "")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            answer = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as e:
        detail = e.read().decode(errors="replace").strip().splitlines()
        raise SubmitError(f"Kubeflow Pipelines at {base} answered {e.code} {e.reason}"
                          + (f": {detail[0][:300]}" if detail else "")
                          + ("; pass --kfp-token or set KF_PIPELINES_TOKEN"
                             if e.code in (401, 403) else "")) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise SubmitError(f"cannot reach Kubeflow Pipelines at {base} ({reason}); check "
                          "--kfp-host (e.g. http://localhost:8080 after `kubectl port-forward "
                          "-n kubeflow svc/ml-pipeline-ui 8080:80`)") from None
    except json.JSONDecodeError:
        raise SubmitError(f"Kubeflow Pipelines at {base} answered with something that is not "
                          "JSON; is --kfp-host the KFP API endpoint?") from None
    run_id = answer.get("run_id")
    if not run_id:
        raise SubmitError(f"Kubeflow Pipelines at {base} created no run: {str(answer)[:300]}")
    return f"{base}/#/runs/details/{run_id}"
