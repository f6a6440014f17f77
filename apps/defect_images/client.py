"""The defect-images models' client: encoded images in; the class (classify mode) or the
anomaly score, threshold and decision (anomaly mode) out, over gRPC or REST, from a TF
Serving endpoint (tensorflow_model_server or the suite's server)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from serving.clients import DEFAULT_GRPC_TARGET, AppClient, GrpcClient, RestClient

_OPTIONAL = {"is_defect": np.int64, "score": np.float32, "threshold": np.float32}


@dataclass(frozen=True)
class DefectPrediction:
    """Per image: the decided class name (a defect class, or "ok" / "defect" in anomaly
    mode), its id and the probabilities; in anomaly mode the anomaly score and the threshold
    it was compared with; ``is_defect`` where the model knows good-part classes."""

    labels: list[str]
    class_ids: np.ndarray  # int64 [n]
    probabilities: np.ndarray  # float32 [n, classes] (anomaly mode: [n, 2], ok / defect)
    is_defect: np.ndarray | None  # int64 [n]: 1 = defect
    scores: np.ndarray | None  # float32 [n]: anomaly score (anomaly mode)
    thresholds: np.ndarray | None  # float32 [n]: the decision threshold (anomaly mode)
    version: int | None  # the model version that answered (gRPC only)

    @property
    def anomaly(self) -> bool:
        """Whether an anomaly model answered."""
        return self.scores is not None


class DefectImagesClient(AppClient):
    """Asks a served defect-images model (classifier or anomaly detector) about images: sends
    the encoded JPEG / PNG / BMP bytes as serialized tf.Examples to ``serving_default`` (the
    model decodes and resizes them itself), at most ``max_images_per_request`` per call."""

    def __init__(self, target: str = DEFAULT_GRPC_TARGET, *, model: str = "defect_images",
                 max_images_per_request: int = 16,
                 client: GrpcClient | RestClient | None = None, **client_options):
        super().__init__(target, model=model, client=client, **client_options)
        self.max_images_per_request = max_images_per_request

    def predict(self, images: Sequence[bytes]) -> DefectPrediction:
        """Classifies (or scores) encoded images, the bytes of image files."""
        if not images:
            raise ValueError("expected at least one image")
        labels: list[str] = []
        arrays: dict[str, list[np.ndarray]] = {}
        version = None
        step = self.max_images_per_request
        for start in range(0, len(images), step):
            result = self.serving_default([{"image": bytes(image)}
                                           for image in images[start:start + step]])
            outputs = result.outputs
            labels += [c.decode() if isinstance(c, bytes) else str(c)
                       for c in outputs["classes"]]
            wanted = {"class_ids": np.int64, "probabilities": np.float32,
                      **{k: t for k, t in _OPTIONAL.items() if k in outputs}}
            for name, dtype in wanted.items():
                arrays.setdefault(name, []).append(np.asarray(outputs[name], dtype=dtype))
            version = result.version
        joined = {k: np.concatenate(v) for k, v in arrays.items()}
        return DefectPrediction(labels, joined["class_ids"], joined["probabilities"],
                                joined.get("is_defect"), joined.get("score"),
                                joined.get("threshold"), version)
