"""TFLite export of a pushed model: four quantization variants, each checked on held-out data.

After a push, the Keras model kept inside the pushed SavedModel is converted to float32,
float16, dynamic-range and full-integer (int8, calibrated on training examples) ``.tflite``
files under ``<edge_base>/<version>/``, beside a ``report.json`` with each variant's size,
latency, quality and agreement with the served model on held-out examples: for a classifier
accuracy and argmax agreement with the served SavedModel, for a ranker (``top_k`` > 0)
recall@k and top-k agreement with the Keras scoring model. Variants named optional that do
not convert are listed under ``skipped`` with the reason. The edge version folder appears
complete or not at all. TFT vocabularies and parsing stay outside the .tflite: the files
take the transformed model input (float32 or integer ids), and the TFT vocabularies named
in ``vocabularies`` are copied beside them as ``<name>.txt``. A model that converts to no
variant at all (an operation the converter cannot lower) gets a report with no variants and
the converter's reason under ``skipped["all variants"]``: the push stands.
"""

import glob
import json
import os
import shutil
import tempfile

import suite  # noqa: F401  (Keras policy before TensorFlow)
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts
from tfx.types.artifact import Artifact

REPORT = "report.json"
ALL_VARIANTS = "all variants"  # the key under ``skipped`` when the model converts to none


class EdgeModels(Artifact):
    """The .tflite files and report written for one pushed model version."""

    # <namespace>.<Title>: the form Kubeflow V2 schema titles require.
    TYPE_NAME = "suite.EdgeModels"


def _split_files(examples_uri: str, split: str) -> list[str]:
    files = sorted(glob.glob(os.path.join(examples_uri, f"Split-{split}", "*")))
    if not files:
        raise FileNotFoundError(f"{examples_uri}: no examples in split {split!r}")
    return files


def _read_serialized(files, limit: int) -> list[bytes]:
    import tensorflow as tf

    ds = tf.data.TFRecordDataset(files, compression_type="GZIP" if files[0].endswith(".gz") else "")
    return [bytes(x.numpy()) for x in ds.take(limit)]


def export_edge_models(
    pushed_dir: str,
    edge_dir: str,
    *,
    train_examples: "list[bytes]",
    eval_examples: "list[bytes]",
    transform_output_dir: str,
    label_key: str,
    model_input_key: str,
    reference_output: str = "probabilities",
    top_k: int = 0,
    optional_variants: "tuple[str, ...]" = (),
    vocabularies: "tuple[str, ...]" = (),
) -> dict:
    """Converts and checks the pushed model; writes ``edge_dir`` atomically; returns the report.

    A classifier (``top_k`` 0) is compared with the served ``reference_output``; a ranker
    with the Keras scoring model's own scores, since its served outputs are the top-k only.
    """
    import numpy as np
    import tensorflow as tf
    import tensorflow_transform as tft

    from serving import tflite
    from serving.export import export_core_model, load_keras_model

    tft_output = tft.TFTransformOutput(transform_output_dir)
    tft_layer = tft_output.transform_features_layer()
    raw_spec = tft_output.raw_feature_spec()

    def transformed(examples):
        features = tft_layer(tf.io.parse_example(tf.constant(examples, tf.string), raw_spec))
        return {k: v.numpy() for k, v in features.items()}

    keras_model = load_keras_model(pushed_dir)
    input_dtype = np.dtype(keras_model.inputs[0].dtype)  # float32, or int32 for ids
    x_train = transformed(train_examples)[model_input_key].astype(input_dtype)
    eval_features = transformed(eval_examples)
    x_eval = eval_features[model_input_key].astype(input_dtype)
    labels = eval_features.get(label_key)
    if top_k:
        reference = keras_model.predict(x_eval, batch_size=256, verbose=0)
    else:
        served = tf.saved_model.load(pushed_dir).signatures["serving_default"]
        reference = served(examples=tf.constant(eval_examples, tf.string))[reference_output]
        reference = reference.numpy()

    parent = os.path.dirname(edge_dir.rstrip("/"))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".staging-", dir=parent)
    try:
        core_dir = os.path.join(staging, "core_model")
        export_core_model(keras_model, core_dir)
        try:
            paths, skipped = tflite.convert_variants(core_dir, staging, x_train,
                                                     optional=optional_variants)
        except tflite.ConversionError as e:
            # The model is pushed and serves; only its edge files cannot be made: recorded
            # in the report (and the run summary), not a failed run after the push.
            paths, skipped = {}, {ALL_VARIANTS: f"the model does not convert: {e}"}
        shutil.rmtree(core_dir)
        report = (tflite.evaluate(paths, x_eval, reference, labels, top_k=top_k or None)
                  if paths else {"variants": {}, "n_examples": len(x_eval)})
        for variant in report["variants"].values():  # where the files are once in place
            variant["path"] = os.path.join(edge_dir, os.path.basename(variant["path"]))
        copied = {}
        for name in vocabularies:
            copied[name] = f"{name}.txt"
            shutil.copy(tft_output.vocabulary_file_by_name(name),
                        os.path.join(staging, copied[name]))
        report.update(pushed_model=pushed_dir, model_input=model_input_key,
                      files={v: os.path.basename(p) for v, p in paths.items()},
                      skipped=skipped, vocabularies=copied)
        tflite.write_report(report, os.path.join(staging, REPORT))
        shutil.rmtree(edge_dir, ignore_errors=True)
        os.rename(staging, edge_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


@component
def TFLiteExport(  # noqa: N802 (TFX component names are classes)
    pushed_model: InputArtifact[standard_artifacts.PushedModel],
    examples: InputArtifact[standard_artifacts.Examples],
    transform_graph: InputArtifact[standard_artifacts.TransformGraph],
    edge_models: OutputArtifact[EdgeModels],
    edge_base: Parameter[str],
    label_key: Parameter[str],
    model_input_key: Parameter[str],
    code_version: Parameter[str],
    max_eval_examples: Parameter[int] = 500,
    max_representative_examples: Parameter[int] = 200,
    top_k: Parameter[int] = 0,
    optional_variants: Parameter[str] = "",
    vocabularies: Parameter[str] = "",
) -> None:
    """TFX component: TFLite variants of the pushed model version (nothing when not pushed)."""
    del code_version  # only part of the cache key: new code converts again
    if not pushed_model.get_int_custom_property("pushed"):
        edge_models.set_int_custom_property("exported", 0)
        return
    version = pushed_model.get_string_custom_property("pushed_version")
    pushed_dir = pushed_model.get_string_custom_property("pushed_destination")
    edge_dir = os.path.join(edge_base, version)
    report_path = os.path.join(edge_dir, REPORT)
    if not os.path.exists(report_path):
        export_edge_models(
            pushed_dir, edge_dir,
            train_examples=_read_serialized(_split_files(examples.uri, "train"),
                                            max_representative_examples),
            eval_examples=_read_serialized(_split_files(examples.uri, "eval"), max_eval_examples),
            transform_output_dir=transform_graph.uri,
            label_key=label_key, model_input_key=model_input_key, top_k=top_k,
            optional_variants=tuple(v for v in optional_variants.split(",") if v),
            vocabularies=tuple(v for v in vocabularies.split(",") if v))
    shutil.copy(report_path, os.path.join(edge_models.uri, REPORT))
    metric = "recall_at_k" if top_k else "accuracy"
    with open(report_path) as f:
        quality = {v: r.get(metric) for v, r in json.load(f)["variants"].items()}
    edge_models.set_int_custom_property("exported", 1)
    edge_models.set_string_custom_property("edge_dir", edge_dir)
    edge_models.set_string_custom_property(metric, json.dumps(quality))
