"""Serving validation before push: the candidate must load and answer its warmup requests.

TFX's InfraValidator starts TF Serving in Docker or Kubernetes. This component runs the same
check in process with the suite's own server (``serving.server``, TF Serving's contracts)
on an ephemeral loopback port: the Trainer's model (its ``Format-Serving`` folder, found as
the Pusher finds it) is served as version 1 and must become AVAILABLE (loading replays its
warmup requests), answer GetModelMetadata, and answer every request of its
``assets.extra/tf_serving_warmup_requests`` sent over gRPC. The outcome is an InfraBlessing
written as InfraValidator writes it (custom property ``blessed`` 1/0 and an
``INFRA_BLESSED`` / ``INFRA_NOT_BLESSED`` file, plus ``reason``), so a Pusher given
``infra_blessing=`` refuses to push a model that would not serve. When the Evaluator's
blessing is passed and negative, the model is not started at all.
"""

import os
import tempfile
from dataclasses import dataclass

import suite  # noqa: F401  (Keras policy before TensorFlow)
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

BLESSED_FILE = "INFRA_BLESSED"
NOT_BLESSED_FILE = "INFRA_NOT_BLESSED"


@dataclass(frozen=True)
class ValidationResult:
    """Whether the model served, why not if it did not, and how many warmup requests it
    answered over gRPC."""

    blessed: bool
    reason: str
    warmup_requests: int = 0


def _send(client, log, model_name: str) -> None:
    """Sends one warmup PredictionLog's request to ``model_name`` (latest version)."""
    kind = log.WhichOneof("log_type")
    if kind not in ("predict_log", "classify_log", "regress_log"):
        raise ValueError(f"warmup record of type {kind!r} is not supported")
    request = getattr(log, kind).request
    request.model_spec.name = model_name
    request.model_spec.ClearField("version")
    request.model_spec.ClearField("version_label")
    if kind == "predict_log":
        response = client.call(client.prediction.Predict, request)
        if not response.outputs:
            raise ValueError("Predict returned no outputs")
    elif kind == "classify_log":
        client.call(client.prediction.Classify, request)
    else:
        client.call(client.prediction.Regress, request)


def _stage(model_dir: str, version_dir: str) -> str:
    """Makes ``model_dir`` version 1 of a local model base path: a symlink to a local
    folder, a copy of a remote one (gs://... on Kubeflow / Vertex AI)."""
    from suite import files

    os.makedirs(os.path.dirname(version_dir), exist_ok=True)
    if files.is_local(model_dir):
        os.symlink(os.path.abspath(model_dir), version_dir)
    else:
        files.copy_tree(model_dir, version_dir)
    return version_dir


def validate_serving_model(model_dir: str, *, model_name: str, timeout_s: float = 60.0,
                           max_warmup_requests: int = 100) -> ValidationResult:
    """Serves ``model_dir`` in the suite's server on a loopback port and checks it over gRPC."""
    from serving.clients import GrpcClient, ServingClientError
    from serving.repository import ModelEntry
    from serving.server import ModelServer, ServerOptions
    from serving.warmup import read_warmup_requests

    with tempfile.TemporaryDirectory(prefix="serving-validation-") as tmp:
        base = os.path.join(tmp, model_name)
        local_dir = _stage(model_dir, os.path.join(base, "1"))
        if not os.path.exists(os.path.join(local_dir, "saved_model.pb")):
            return ValidationResult(False, f"{model_dir}: no saved_model.pb")
        server = ModelServer([ModelEntry(model_name, base)], ServerOptions(
            grpc_port=0, rest_port=None, poll_seconds=3600.0))
        server.start()
        client = GrpcClient(server.grpc_target, timeout_s=timeout_s, retries=2)
        sent = 0
        try:
            (status,) = client.status(model_name)
            if status.state != status.AVAILABLE:
                return ValidationResult(False, f"model {model_name} from {model_dir} did not "
                                               f"load: {status.status.error_message}")
            client.metadata(model_name)
            for log in read_warmup_requests(local_dir, max_warmup_requests):
                _send(client, log, model_name)
                sent += 1
        except (ServingClientError, ValueError) as e:
            return ValidationResult(False, f"model {model_name} from {model_dir}: warmup request "
                                           f"{sent + 1} failed: {e}", sent)
        finally:
            client.close()
            server.stop()
    return ValidationResult(True, f"loaded and answered {sent} warmup requests over gRPC", sent)


def mark_infra_blessing(blessing, result: ValidationResult) -> None:
    """Records ``result`` on an InfraBlessing artifact as TFX's InfraValidator does."""
    from tfx.dsl.io import fileio

    name = BLESSED_FILE if result.blessed else NOT_BLESSED_FILE
    fileio.makedirs(blessing.uri)
    with fileio.open(os.path.join(blessing.uri, name), "w") as f:
        f.write(result.reason + "\n")
    blessing.set_int_custom_property("blessed", int(result.blessed))
    blessing.set_string_custom_property("reason", result.reason)
    blessing.set_int_custom_property("warmup_requests", result.warmup_requests)


@component
def ServingValidator(  # noqa: N802 (TFX component names are classes)
    model: InputArtifact[standard_artifacts.Model],
    blessing: OutputArtifact[standard_artifacts.InfraBlessing],
    model_name: Parameter[str],
    model_blessing: InputArtifact[standard_artifacts.ModelBlessing] = None,
    timeout_seconds: Parameter[int] = 60,
    max_warmup_requests: Parameter[int] = 100,
) -> None:
    """TFX component: InfraBlessing of the Trainer's model from the suite's model server."""
    from tfx.utils import path_utils

    if model_blessing is not None and not model_blessing.get_int_custom_property("blessed"):
        mark_infra_blessing(blessing, ValidationResult(False, "not blessed by the Evaluator; "
                                                              "not started"))
        return
    # Where the Pusher looks for the model to push.
    model_dir = path_utils.serving_model_path(
        model.uri, path_utils.is_old_model_artifact(model))
    mark_infra_blessing(blessing, validate_serving_model(
        model_dir, model_name=model_name, timeout_s=float(timeout_seconds),
        max_warmup_requests=max_warmup_requests))
