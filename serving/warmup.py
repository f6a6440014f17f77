"""TF Serving warmup requests: the PredictionLog records a SavedModel keeps in
``assets.extra/tf_serving_warmup_requests``, which a model server replays when it loads
the model (so the first real request does not pay for graph tracing and memory setup).

The export writes them from real examples; the suite's server and the serving validator
read them back.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import suite  # noqa: F401  (Keras policy before TensorFlow)
import numpy as np
import tensorflow as tf

# Where TF Serving looks for warmup records, relative to a SavedModel folder.
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def write_warmup_requests(model_dir: str, model_name: str,
                          serialized_examples: Sequence[bytes]) -> None:
    """Writes one ``serving_default`` PredictRequest per serialized tf.Example as the warmup
    records of the SavedModel in ``model_dir`` (replacing any already there)."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path = os.path.join(model_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for example in serialized_examples:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name="serving_default"))
            request.inputs["examples"].CopyFrom(
                tf.make_tensor_proto(np.array([example], dtype=object), dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def read_warmup_requests(model_dir: str, limit: int = 1000) -> list:
    """The PredictionLog records of the SavedModel in ``model_dir`` (none when it has no
    warmup file; TF Serving reads at most 1000)."""
    from tensorflow_serving.apis import prediction_log_pb2

    from suite import files

    path = os.path.join(model_dir, WARMUP_FILE)
    if not files.exists(path):
        return []
    return [prediction_log_pb2.PredictionLog.FromString(r.numpy())
            for r in tf.data.TFRecordDataset(path).take(limit)]
