"""The one serving export of the suite: a TF Serving SavedModel around a Keras 3 model.

Signatures of every exported model:
- ``serving_default``: serialized tf.Example strings -> parse raw features -> TFT transform
  -> Keras model -> named outputs (what TF Serving clients and TFMA call);
- ``transform_features``: serialized tf.Example strings -> every transformed feature (TFMA
  preprocessing, debugging);
- ``serving_raw``: the raw feature tensors themselves, for clients that send tensors
  (a variable-length feature as a dense ``[batch, n]`` tensor padded with zeros or empty
  strings, which are dropped).

The Keras 3 model and the TFT layer (a tf_keras layer) are tracked side by side on one
``keras.export.ExportArchive``; the TFT layer is never put inside the Keras model. The
export also writes ``assets.extra/tf_serving_warmup_requests`` from real examples
(``serving.warmup``) and keeps the Keras model itself as ``assets.extra/keras/model.keras``
so that tools that need the Keras graph (TFLite conversion, explanations) use exactly what
is served.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from collections.abc import Callable, Mapping, Sequence

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras
import tensorflow as tf

from serving.versions import SAVED_MODEL_LAST
from serving.warmup import write_warmup_requests
from suite import files

KERAS_MODEL_FILE = os.path.join("assets.extra", "keras", "model.keras")
METADATA_FILE = os.path.join("assets.extra", "suite_metadata.json")
SERVING_RAW = "serving_raw"
TRANSFORM_FEATURES = "transform_features"

# outputs -> named outputs; (outputs, features) -> named outputs when the spec names a
# ``feature_layer``.
Postprocess = Callable[..., Mapping[str, tf.Tensor]]


@dataclass(frozen=True)
class ExportSpec:
    """What an app's served model takes and returns.

    serving_features: raw features a client must send (the label is never one of them).
    model_inputs: transformed features fed to the Keras model, in its input order.
    postprocess: turns the Keras model's output into named serving outputs.
    feature_layer: postprocess also takes the output of this layer of the Keras model,
        computed in the same pass (e.g. to score how unlike the training data an input
        is); the variables postprocess uses are saved with the export.
    """

    serving_features: tuple[str, ...]
    model_inputs: tuple[str, ...]
    postprocess: Postprocess
    feature_layer: str | None = None


def classification_outputs(class_names: Sequence[str]) -> Postprocess:
    """Outputs of a classifier whose Keras model returns class probabilities."""
    names = tf.constant(list(class_names))

    def postprocess(probabilities: tf.Tensor) -> dict[str, tf.Tensor]:
        class_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {
            "probabilities": probabilities,
            "class_ids": class_ids,
            "classes": tf.gather(names, class_ids),
            "scores": tf.reduce_max(probabilities, axis=-1),
        }

    return postprocess


def serving_feature_spec(raw_feature_spec: Mapping, spec: ExportSpec) -> dict:
    """The part of the raw feature spec that a serving request carries."""
    missing = [f for f in spec.serving_features if f not in raw_feature_spec]
    if missing:
        raise ValueError(f"serving features {missing} are not in the raw schema "
                         f"(has {sorted(raw_feature_spec)})")
    return {f: raw_feature_spec[f] for f in spec.serving_features}


def _tensor_spec(name: str, feature) -> tf.TensorSpec:
    if isinstance(feature, tf.io.VarLenFeature):
        return tf.TensorSpec([None, None], feature.dtype, name=name)
    if not isinstance(feature, tf.io.FixedLenFeature):
        raise ValueError(f"raw feature {name!r}: the raw-tensor signature needs a fixed- or "
                         f"variable-length feature, got {type(feature).__name__}")
    return tf.TensorSpec([None, *feature.shape], feature.dtype, name=name)


def _raw_tensor(feature, tensor: tf.Tensor):
    """A raw-signature input as parsing would give it: variable-length features become
    sparse, without their padding."""
    if not isinstance(feature, tf.io.VarLenFeature):
        return tensor
    return tf.ragged.boolean_mask(tensor, tf.not_equal(tensor, tf.zeros_like(tensor))).to_sparse()


def export_serving_model(
    model: keras.Model,
    tf_transform_output,
    output_dir: str,
    spec: ExportSpec,
    *,
    model_name: str,
    warmup_examples: Sequence[bytes] = (),
    metadata: Mapping | None = None,
) -> str:
    """Writes the serving SavedModel to ``output_dir`` (replaced as a whole) and returns it."""
    tft_layer = tf_transform_output.transform_features_layer()
    raw_spec = tf_transform_output.raw_feature_spec()
    serving_spec = serving_feature_spec(raw_spec, spec)
    served = model if spec.feature_layer is None else keras.Model(
        model.inputs, [model.output, model.get_layer(spec.feature_layer).output])

    def predict(raw_features):
        transformed = tft_layer(raw_features)
        inputs = [transformed[name] for name in spec.model_inputs]
        outputs = served(inputs[0] if len(inputs) == 1 else inputs, training=False)
        return dict(spec.postprocess(outputs) if spec.feature_layer is None
                    else spec.postprocess(*outputs))

    def serve_examples(examples):
        return predict(tf.io.parse_example(examples, serving_spec))

    def transform_features(examples):
        # Everything the examples carry that the schema knows, so the label transforms too.
        return tft_layer(tf.io.parse_example(examples, raw_spec))

    def serve_raw(*tensors):
        return predict({name: _raw_tensor(feature, tensor) for (name, feature), tensor
                        in zip(serving_spec.items(), tensors, strict=True)})

    examples_sig = [tf.TensorSpec([None], tf.string, name="examples")]
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(tft_layer)
    archive.add_endpoint("serving_default", serve_examples, input_signature=examples_sig)
    archive.add_endpoint(TRANSFORM_FEATURES, transform_features, input_signature=examples_sig)
    archive.add_endpoint(
        SERVING_RAW, serve_raw,
        input_signature=[_tensor_spec(n, f) for n, f in serving_spec.items()])

    # Built in a local folder and put in place whole (gs:// too), so a failed export leaves
    # no half-written model behind.
    with files.staged_tree(output_dir, SAVED_MODEL_LAST) as staging:
        archive.write_out(staging, verbose=False)
        keras_path = os.path.join(staging, KERAS_MODEL_FILE)
        os.makedirs(os.path.dirname(keras_path), exist_ok=True)
        model.save(keras_path)
        if metadata is not None:
            with open(os.path.join(staging, METADATA_FILE), "w") as f:
                json.dump(metadata, f, indent=2)
        if warmup_examples:
            write_warmup_requests(staging, model_name, warmup_examples)
    return output_dir


def served_variables(loaded) -> dict:
    """Every variable the endpoints of a loaded export use, by name (without ":0"): the
    Keras model's and those a postprocess created. Keras' ExportArchive keeps the full list
    as ``_all_variables`` (``variables`` holds the tracked layers' only)."""
    found = getattr(loaded, "_all_variables", None) or loaded.variables
    return {v.name.split(":")[0]: v for v in found}


def load_keras_model(serving_model_dir: str) -> keras.Model:
    """The Keras model kept inside an exported (or pushed) serving model (a local folder or
    an object store's)."""
    path = os.path.join(serving_model_dir, KERAS_MODEL_FILE)
    if not files.exists(path):
        raise FileNotFoundError(
            f"{serving_model_dir}: expected a suite export holding {KERAS_MODEL_FILE}")
    import zipfile

    with tempfile.TemporaryDirectory(prefix="keras-model-") as local:
        if not files.is_local(path):
            files.copy_file(path, os.path.join(local, "model.keras"))
            path = os.path.join(local, "model.keras")
        with zipfile.ZipFile(path) as archive:
            config = archive.read("config.json")
        if b"keras_hub" in config:
            import keras_hub  # noqa: F401  (registers its layers, e.g. backbones, for loading)
        if b"suite_blocks" in config:  # the suite's own layers, registered on import
            import blocks.signal.log_mel  # noqa: F401
            import blocks.signal.spec_augment  # noqa: F401
            import blocks.vision.intensity  # noqa: F401
        return keras.saving.load_model(path, compile=False)


def load_metadata(serving_model_dir: str) -> dict:
    """The app metadata (app name, effective config) kept inside a suite export."""
    path = os.path.join(serving_model_dir, METADATA_FILE)
    if not files.exists(path):
        raise FileNotFoundError(
            f"{serving_model_dir}: expected a suite export holding {METADATA_FILE}")
    return json.loads(files.read_text(path))


def export_core_model(model: keras.Model, output_dir: str) -> str:
    """Writes the bare Keras model (transformed inputs -> outputs) as a SavedModel with a
    ``serve`` endpoint: the form the TFLite converter handles for Keras 3 models."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    input_spec = [tf.TensorSpec(t.shape, t.dtype, name=t.name.split(":")[0]) for t in model.inputs]
    if len(input_spec) != 1:
        raise ValueError(f"TFLite export expects a model with one input, {model.name} has "
                         f"{len(input_spec)}")
    archive.add_endpoint("serve", lambda x: model(x, training=False), input_signature=input_spec)
    archive.write_out(output_dir, verbose=False)
    return output_dir


def split_front_end(model: keras.Model, head_from: str) -> tuple[keras.Model, keras.Model]:
    """Splits ``model`` before its layer ``head_from``: ``(front_end, head)`` with
    ``head(front_end(x)) == model(x)``.

    The front end is the signal processing a device runs with its own DSP library (e.g. a
    Welch spectrum or a log-mel filterbank, whose wide dynamic range no 8-bit tensor holds);
    the head is what the TFLite files carry. The layers from ``head_from`` on must form a
    chain (each one takes the previous one's output); the caller checks the composition on
    real inputs.
    """
    names = [layer.name for layer in model.layers]
    if head_from not in names:
        raise ValueError(f"{model.name}: no layer {head_from!r} to split the front end at; "
                         f"layers: {names}")
    start = names.index(head_from)
    front_end = keras.Model(model.inputs, model.layers[start].input, name="front_end")
    inputs = keras.Input(front_end.output.shape[1:], name="front_end_output")
    x = inputs
    for layer in model.layers[start:]:
        x = layer(x)
    return front_end, keras.Model(inputs, x, name=f"{model.name}_head")
