"""The medical-scans model's client: encoded images in, class names, probabilities, the
decision threshold and the decision (a class, or a referral to a reader) out, over gRPC or
REST, from a TF Serving endpoint (tensorflow_model_server or the suite's server)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from serving.clients import DEFAULT_GRPC_TARGET, AppClient, GrpcClient, RestClient


@dataclass(frozen=True)
class ScanPrediction:
    """Per image: the class name the threshold gives, the probability of each class, the
    decision threshold on the positive class's probability that the model applied, the
    decision (the class name, or REFER_UNCERTAIN inside the refer band, or
    REFER_OUT_OF_DISTRIBUTION for an image unlike the training data) and the
    out-of-distribution score."""

    labels: list[str]
    probabilities: np.ndarray  # float32 [n, 2]: negative, positive
    thresholds: np.ndarray  # float32 [n]
    decisions: list[str]
    ood_scores: np.ndarray  # float32 [n]
    version: int | None  # the model version that answered (gRPC only)


class MedicalScansClient(AppClient):
    """Classifies images with a served medical-scans model: sends the encoded PNG / JPEG
    bytes as serialized tf.Examples to ``serving_default`` (the model decodes and resizes
    them itself), at most ``max_images_per_request`` per call."""

    def __init__(self, target: str = DEFAULT_GRPC_TARGET, *, model: str = "medical_scans",
                 max_images_per_request: int = 16,
                 client: GrpcClient | RestClient | None = None, **client_options):
        super().__init__(target, model=model, client=client, **client_options)
        self.max_images_per_request = max_images_per_request

    def predict(self, images: Sequence[bytes]) -> ScanPrediction:
        """Classifies encoded images (PNG or JPEG file bytes)."""
        if not images:
            raise ValueError("expected at least one image")
        labels, arrays, version = self.classify_examples(
            [{"image": bytes(image)} for image in images], self.max_images_per_request,
            {"probabilities": np.float32, "threshold": np.float32, "decision": object,
             "ood_score": np.float32})
        decisions = [d.decode() if isinstance(d, bytes) else str(d)
                     for d in arrays["decision"]]
        return ScanPrediction(labels, arrays["probabilities"], arrays["threshold"],
                              decisions, arrays["ood_score"], version)
