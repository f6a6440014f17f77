"""The sensor-vibration model's client: signal windows in, class names and probabilities
out, over gRPC or REST, from a TF Serving endpoint (tensorflow_model_server or the suite's
server)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serving.clients import DEFAULT_GRPC_TARGET, AppClient, GrpcClient, RestClient


@dataclass(frozen=True)
class VibrationPrediction:
    """Per window: the predicted class name, its id and every class probability."""

    labels: list[str]
    class_ids: np.ndarray  # int64 [n]
    probabilities: np.ndarray  # float32 [n, n_classes]
    version: int | None  # the model version that answered (gRPC only)


class VibrationClient(AppClient):
    """Classifies vibration signal windows with a served sensor-vibration model.

    The window size (values per window: samples x channels) comes from the model's
    ``serving_raw`` signature in GetModelMetadata unless ``window_values`` is given; class
    names come back from the server with each prediction. Windows are sent as serialized
    tf.Examples to ``serving_default``, at most ``max_windows_per_request`` per call (keep
    it <= the server's max_batch_size when batching is on).
    """

    def __init__(self, target: str = DEFAULT_GRPC_TARGET, *, model: str = "sensor_vibration",
                 window_values: int | None = None, max_windows_per_request: int = 32,
                 client: GrpcClient | RestClient | None = None, **client_options):
        super().__init__(target, model=model, client=client, **client_options)
        self._window_values = window_values
        self.max_windows_per_request = max_windows_per_request

    @property
    def window_values(self) -> int:
        """Signal values per window the model takes (from GetModelMetadata if not given)."""
        if self._window_values is None:
            signatures = self.client.metadata(self.model)
            raw = signatures.get("serving_raw")
            dims = [d.size for d in raw.inputs["signal"].tensor_shape.dim] \
                if raw is not None and "signal" in raw.inputs else []
            if len(dims) != 2 or dims[1] <= 0:
                raise ValueError(f"model {self.model}: cannot read the window size from its "
                                 "metadata (no serving_raw signature with a [batch, values] "
                                 "'signal' input); pass window_values=")
            self._window_values = dims[1]
        return self._window_values

    def predict(self, signal_windows: np.ndarray) -> VibrationPrediction:
        """Classifies windows shaped [n, window] or [n, window, channels]."""
        windows = np.asarray(signal_windows, dtype=np.float32)
        if windows.ndim not in (2, 3) or len(windows) == 0:
            raise ValueError(f"expected windows shaped [n, window] or [n, window, channels], "
                             f"got {windows.shape}")
        windows = windows.reshape(len(windows), -1)
        if windows.shape[1] != self.window_values:
            raise ValueError(f"model {self.model} takes windows of {self.window_values} values "
                             f"(samples x channels), got {windows.shape[1]}")
        labels, arrays, version = self.classify_examples(
            [{"signal": w} for w in windows], self.max_windows_per_request,
            {"class_ids": np.int64, "probabilities": np.float32})
        return VibrationPrediction(labels, arrays["class_ids"], arrays["probabilities"],
                                   version)
