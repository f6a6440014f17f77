"""TFLite export of a pushed model: four quantization variants, each checked on held-out data.

After a push, the Keras model kept inside the pushed SavedModel is converted to float32,
float16, dynamic-range and full-integer (int8, calibrated on training examples) ``.tflite``
files under ``<edge_base>/<version>/``, beside a ``report.json`` with each variant's size,
latency, quality and agreement with the served model on held-out examples: for a classifier
accuracy (and AUC when binary) and argmax agreement with the served SavedModel, for a ranker
(``top_k`` > 0) recall@k, MRR@k and top-k agreement with the Keras scoring model. The gate
(``serving.tflite.gate``, limits from the app config's ``edge`` part) rejects a variant
whose metric drops by more than its limit: the report keeps its figures and the reason, but
its file is not published beside the accepted ones, so a device build cannot pick it up.
The report names the variant to ship (``ship``). An int8 file small enough for a
microcontroller (``edge.mcu_max_kib``) is also run in the TensorFlow Lite for Microcontrollers
interpreter (``serving.mcu``): the report's ``mcu`` entry says whether it runs there (or which
operator blocks it), the tensor arena it needs and its agreement with the TFLite interpreter.
Variants named optional that do not convert are listed under ``skipped`` with the reason.
The edge version folder appears complete or not at all (on an object store, ``report.json`` is
uploaded last: ``suite.files.staged_tree``). TFT vocabularies and parsing stay
outside the .tflite: the files take the transformed model input (float32 or integer ids; or
the output of the model's signal-processing front end, with ``head_from``), and the TFT
vocabularies named
in ``vocabularies`` are copied beside them as ``<name>.txt``. A model that converts to no
variant at all (an operation the converter cannot lower) gets a report with no variants and
the converter's reason under ``skipped["all variants"]``: the push stands.
"""

import json
import os
import shutil

import suite  # noqa: F401  (Keras policy before TensorFlow)
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts
from tfx.types.artifact import Artifact

from suite import files
from suite.config import EdgeConfig, from_dict

REPORT = "report.json"
PRUNED = "pruned_int8"  # the magnitude-pruned int8 variant (edge.prune_sparsity > 0)
STUDENT = "student"  # the distilled student's variants: student_float32, student_int8
EVAL_EXAMPLES = 500  # held-out examples every variant is checked on
REPRESENTATIVE_EXAMPLES = 200  # training examples that calibrate int8
ALL_VARIANTS = "all variants"  # the key under ``skipped`` when the model converts to none


class EdgeModels(Artifact):
    """The .tflite files and report written for one pushed model version."""

    # <namespace>.<Title>, as Kubeflow V2 requires; importable as such (components/__init__).
    TYPE_NAME = "components.EdgeModels"


def split_files(examples_uri: str, split: str) -> list[str]:
    """The files of one split of an Examples artifact (raises when it has none)."""
    found = files.glob(os.path.join(examples_uri, f"Split-{split}", "*"))
    if not found:
        raise FileNotFoundError(f"{examples_uri}: no examples in split {split!r}")
    return found


def read_serialized(paths, limit: int) -> list[bytes]:
    """The first ``limit`` serialized records of the files ``paths``."""
    import tensorflow as tf

    ds = tf.data.TFRecordDataset(paths, compression_type="GZIP" if paths[0].endswith(".gz")
                                 else "")
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
    edge: "EdgeConfig | None" = None,
    head_from: str = "",
    front_end_text: str = "",
    student: str = "",
    representative_examples: int = REPRESENTATIVE_EXAMPLES,
) -> dict:
    """Converts and checks the pushed model; writes ``edge_dir`` atomically; returns the report.

    A classifier (``top_k`` 0) is compared with the served ``reference_output``; a ranker
    with the Keras scoring model's own scores, since its served outputs are the top-k only.
    ``edge`` holds the gate's limits and the microcontroller check's size limit (None: the
    defaults of ``suite.config.EdgeConfig``). With ``head_from`` the files hold the model
    from that layer on (``serving.export.split_front_end``); the front end before it runs in
    float here to make their inputs, and the report's ``front_end`` entry describes it
    (``front_end_text``: the app's description of what the device computes). With
    ``edge.distill``, the app's ``student`` (``module:function``, ``serving.distill``) is
    trained from the served outputs and the labels of ``train_examples`` and converted to
    float32 and int8 beside the teacher's variants; ``representative_examples`` of them
    calibrate int8.
    """
    import numpy as np
    import tensorflow as tf
    import tensorflow_transform as tft

    from serving import pruning, tflite
    from serving.export import export_core_model, load_keras_model

    tft_output = tft.TFTransformOutput(transform_output_dir)
    tft_layer = tft_output.transform_features_layer()
    raw_spec = tft_output.raw_feature_spec()

    def transformed(examples):
        features = tft_layer(tf.io.parse_example(tf.constant(examples, tf.string), raw_spec))
        return {k: v.numpy() for k, v in features.items()}

    keras_model = load_keras_model(pushed_dir)
    input_dtype = np.dtype(keras_model.inputs[0].dtype)  # float32, or int32 for ids
    train_features = transformed(train_examples)
    x_train = train_features[model_input_key].astype(input_dtype)
    y_train = train_features.get(label_key)
    eval_features = transformed(eval_examples)
    x_eval = eval_features[model_input_key].astype(input_dtype)
    labels = eval_features.get(label_key)
    front_end = None
    if head_from:
        front_end, keras_model, x_train, x_eval = _split(keras_model, head_from, x_train,
                                                         x_eval)
    if top_k:
        reference = keras_model.predict(x_eval, batch_size=256, verbose=0)
    else:
        served = tf.saved_model.load(pushed_dir).signatures["serving_default"]
        reference = served(examples=tf.constant(eval_examples, tf.string))[reference_output]
        reference = reference.numpy()

    with files.staged_tree(edge_dir, last=(REPORT,)) as staging:
        core_dir = os.path.join(staging, "core_model")
        export_core_model(keras_model, core_dir)
        edge = edge or EdgeConfig()
        try:
            paths, skipped = tflite.convert_variants(core_dir, staging,
                                                     x_train[:representative_examples],
                                                     optional=optional_variants)
        except tflite.ConversionError as e:
            # The model is pushed and serves; only its edge files cannot be made: recorded
            # in the report (and the run summary), not a failed run after the push.
            paths, skipped = {}, {ALL_VARIANTS: f"the model does not convert: {e}"}
        shutil.rmtree(core_dir)
        if edge.prune_sparsity > 0 and paths:
            _add_pruned(keras_model, x_train, edge, staging, paths, skipped)
        distilled = {}
        if edge.distill and paths:
            distilled = _add_student(keras_model, student, x_train, y_train, edge, staging,
                                     paths, skipped, representative_examples)
        report = (tflite.evaluate(paths, x_eval, reference, labels, top_k=top_k or None)
                  if paths else {"variants": {}, "n_examples": len(x_eval)})
        if PRUNED in report["variants"]:
            report["variants"][PRUNED]["sparsity"] = pruning.tflite_sparsity(paths[PRUNED])
            report["pruning"] = {"target_sparsity": edge.prune_sparsity,
                                 "epochs": edge.prune_epochs,
                                 "finetune_examples": min(len(x_train),
                                                          edge.finetune_examples)}
        if distilled:
            report[STUDENT] = distilled
            for name in distilled["variants"]:
                report["variants"][name]["parameters"] = distilled["parameters"]
        tflite.gate(report, gate_limits(edge), edge.max_latency_ratio)
        report["mcu"] = _mcu_entry(paths.get("int8"), x_eval, edge.mcu_max_kib)
        for variant in report["variants"].values():  # where the files are once in place
            if variant["accepted"]:
                variant["path"] = os.path.join(edge_dir, os.path.basename(variant["path"]))
            else:  # not published: a device build must not find it
                os.remove(variant["path"])
                variant["path"] = None
        copied = {}
        for name in vocabularies:
            copied[name] = f"{name}.txt"
            files.copy_file(tft_output.vocabulary_file_by_name(name),
                            os.path.join(staging, copied[name]))
        if front_end is not None:
            report["front_end"] = {
                "model_input": model_input_key, "head_from": head_from,
                "output_shape": list(front_end.output.shape[1:]),
                "computes": front_end_text,
                "operations": [f"{op.name} ({type(op).__name__})"
                               for op in front_end.operations[1:]],
                "note": "the .tflite files take the front end's output; a device computes "
                        "the front end with its own DSP library (the pushed SavedModel "
                        "holds its float reference)"}
        report.update(pushed_model=pushed_dir, model_input=model_input_key,
                      parameters=int(keras_model.count_params()),
                      files={v: os.path.basename(p) for v, p in paths.items()
                             if report["variants"][v]["accepted"]},
                      skipped=skipped, vocabularies=copied)
        tflite.write_report(report, os.path.join(staging, REPORT))
    return report


def _add_pruned(model, x_train, edge: EdgeConfig, staging: str, paths: dict,
                skipped: dict) -> None:
    """Converts a magnitude-pruned copy of ``model`` to int8 as the ``pruned_int8`` variant
    (into ``paths``, or the reason into ``skipped``)."""
    import keras

    from serving import pruning, tflite
    from serving.export import export_core_model

    x = x_train[:edge.finetune_examples]
    pruned = keras.models.clone_model(model)
    pruned.set_weights(model.get_weights())
    pruning.prune(pruned, x, model.predict(x, batch_size=256, verbose=0), edge.prune_sparsity,
                  epochs=edge.prune_epochs)
    folder = os.path.join(staging, "pruned")
    core = export_core_model(pruned, os.path.join(folder, "core_model"))
    try:
        converted, failed = tflite.convert_variants(core, folder, x, variants=["int8"],
                                                    optional=["int8"])
    except tflite.ConversionError as e:
        converted, failed = {}, {"int8": str(e)}
    if "int8" in converted:
        paths[PRUNED] = os.path.join(staging, f"{PRUNED}.tflite")
        os.rename(converted["int8"], paths[PRUNED])
    else:
        skipped[PRUNED] = failed.get("int8", "did not convert")
    shutil.rmtree(folder)


def _add_student(teacher, student: str, x_train, y_train, edge: EdgeConfig, staging: str,
                 paths: dict, skipped: dict, representative_examples: int) -> dict:
    """Trains the app's ``student`` (``module:function``) from ``teacher`` and the labels,
    and converts it to ``student_float32`` and ``student_int8`` (into ``paths``, or the
    reason into ``skipped``); returns the report's ``student`` entry (empty when the app
    has no student)."""
    from serving import distill, tflite
    from serving.export import export_core_model

    if not student:
        skipped[STUDENT] = "this app (or mode) declares no student model"
        return {}
    x, labels = x_train[:edge.distill_examples], y_train
    if labels is not None:
        labels = labels[:edge.distill_examples]
    model = distill.student_builder(student)(teacher)
    training = distill.distill(model, teacher, x, labels, alpha=edge.distill_alpha,
                               temperature=edge.distill_temperature, mixup=edge.distill_mixup,
                               epochs=edge.distill_epochs)
    folder = os.path.join(staging, STUDENT)
    core = export_core_model(model, os.path.join(folder, "core_model"))
    try:
        converted, failed = tflite.convert_variants(core, folder, x[:representative_examples],
                                                    variants=["float32", "int8"],
                                                    optional=["int8"])
    except tflite.ConversionError as e:
        converted, failed = {}, {"float32": str(e)}
    names = []
    for variant in ("float32", "int8"):
        name = f"{STUDENT}_{variant}"
        if variant in converted:
            paths[name] = os.path.join(staging, f"{name}.tflite")
            os.rename(converted[variant], paths[name])
            names.append(name)
        else:
            skipped[name] = failed.get(variant, "did not convert")
    shutil.rmtree(folder)
    return {"model": model.name, "parameters": int(model.count_params()),
            "teacher_parameters": int(teacher.count_params()),
            "parameter_ratio": model.count_params() / max(1, teacher.count_params()),
            "alpha": edge.distill_alpha if labels is not None else 1.0,
            "temperature": edge.distill_temperature, "max_epochs": edge.distill_epochs,
            **training, "variants": names}


def _split(model, head_from: str, x_train, x_eval):
    """``(front_end, head, x_train, x_eval)``: the model split before ``head_from`` and the
    examples through its front end; raises when the two do not compose to the model."""
    import numpy as np

    from serving.export import split_front_end

    front_end, head = split_front_end(model, head_from)
    whole = model.predict(x_eval, batch_size=256, verbose=0)
    x_train = front_end.predict(x_train, batch_size=256, verbose=0)
    x_eval = front_end.predict(x_eval, batch_size=256, verbose=0)
    gap = float(np.max(np.abs(head.predict(x_eval, batch_size=256, verbose=0) - whole)))
    if gap > 1e-4:
        raise ValueError(f"head_from={head_from!r}: the front end and head of {model.name} do "
                         f"not compose to the model (largest difference {gap:.2g}); the layers "
                         f"from {head_from!r} on must form a chain")
    return front_end, head, x_train, x_eval


def _mcu_entry(int8_path: "str | None", x_eval, mcu_max_kib: float) -> dict:
    """The report's ``mcu`` entry: the int8 file run in TFLM against the TFLite interpreter,
    or why it was not."""
    from serving import mcu, tflite

    if int8_path is None:
        return {"variant": "int8", "runs": None, "reason": "no int8 file"}
    kib = os.path.getsize(int8_path) / 1024
    if kib > mcu_max_kib:
        return {"variant": "int8", "runs": None,
                "reason": f"not checked: the int8 file is {kib:.0f} KiB, over "
                          f"edge.mcu_max_kib = {mcu_max_kib:g}"}
    return {"variant": "int8",
            **mcu.check(int8_path, x_eval, tflite.run_tflite(int8_path, x_eval))}


def export_from_examples(pushed_dir: str, edge_dir: str, examples_uri: str,
                         transform_output_dir: str, *, edge: EdgeConfig,
                         eval_examples: int = EVAL_EXAMPLES,
                         representative_examples: int = REPRESENTATIVE_EXAMPLES,
                         **arguments) -> dict:
    """``export_edge_models`` on the splits of an Examples artifact: the first
    ``eval_examples`` of eval, and of train as many as int8 calibration, pruning and a
    student need; ``arguments``: the rest of ``export_edge_models``'s."""
    needed = max(representative_examples,
                 edge.finetune_examples if edge.prune_sparsity else 0,
                 edge.distill_examples if edge.distill else 0)
    return export_edge_models(
        pushed_dir, edge_dir,
        train_examples=read_serialized(split_files(examples_uri, "train"), needed),
        eval_examples=read_serialized(split_files(examples_uri, "eval"), eval_examples),
        transform_output_dir=transform_output_dir, edge=edge,
        representative_examples=representative_examples, **arguments)


def gate_limits(edge: "EdgeConfig | None" = None) -> dict[str, float]:
    """The gate's limits (metric -> largest allowed drop) from an app config's ``edge`` part
    (None: the defaults)."""
    from serving.tflite import GATED_METRICS

    edge = edge or EdgeConfig()
    return {metric: getattr(edge, field) for metric, field in GATED_METRICS.items()}


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
    max_eval_examples: Parameter[int] = EVAL_EXAMPLES,
    max_representative_examples: Parameter[int] = REPRESENTATIVE_EXAMPLES,
    top_k: Parameter[int] = 0,
    optional_variants: Parameter[str] = "",
    vocabularies: Parameter[str] = "",
    edge: Parameter[str] = "",
    head_from: Parameter[str] = "",
    front_end: Parameter[str] = "",
    student: Parameter[str] = "",
) -> None:
    """TFX component: TFLite variants of the pushed model version (nothing when not pushed);
    ``edge`` is the app config's ``edge`` part as JSON (empty: the defaults)."""
    del code_version  # only part of the cache key: new code converts again
    if not pushed_model.get_int_custom_property("pushed"):
        edge_models.set_int_custom_property("exported", 0)
        return
    version = pushed_model.get_string_custom_property("pushed_version")
    pushed_dir = pushed_model.get_string_custom_property("pushed_destination")
    edge_dir = os.path.join(edge_base, version)
    report_path = os.path.join(edge_dir, REPORT)
    edge_config = from_dict(EdgeConfig, json.loads(edge), "edge") if edge else EdgeConfig()
    if not files.exists(report_path):
        export_from_examples(
            pushed_dir, edge_dir, examples.uri, transform_graph.uri, edge=edge_config,
            eval_examples=max_eval_examples,
            representative_examples=max_representative_examples,
            label_key=label_key, model_input_key=model_input_key, top_k=top_k,
            optional_variants=tuple(v for v in optional_variants.split(",") if v),
            vocabularies=tuple(v for v in vocabularies.split(",") if v),
            head_from=head_from, front_end_text=front_end, student=student)
    files.makedirs(edge_models.uri)  # a Kubeflow V2 launcher creates no folders
    files.copy_file(report_path, os.path.join(edge_models.uri, REPORT))
    metric = "recall_at_k" if top_k else "accuracy"
    report = json.loads(files.read_text(report_path))
    quality = {v: r.get(metric) for v, r in report["variants"].items()}
    edge_models.set_int_custom_property("exported", 1)
    edge_models.set_string_custom_property("ship", report.get("ship") or "")
    edge_models.set_string_custom_property("edge_dir", edge_dir)
    edge_models.set_string_custom_property(metric, json.dumps(quality))
