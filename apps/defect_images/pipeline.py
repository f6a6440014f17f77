"""The defect-images app's TFMA configs, one per mode (``DefectImages.spec`` builds the
pipeline spec of each: ``defect-images`` and ``defect-images-anomaly``).

The two modes are two pipelines serving two models: each compares a candidate only with the
last blessed model of its own kind. Anomaly mode's TFLite files take the decoded image and
return the logits (-z / 2, z / 2) of the decision (z = (score - threshold) / scale): the
TFLite check compares their argmax with the served decision and with is_defect (accuracy at
the threshold). In both modes the Trainer validates on "validation"; only the Evaluator sees
"eval".
"""

from __future__ import annotations

from apps.defect_images.config import DefectConfig
from apps.defect_images.features import (
    CLASS_NAME, DECISION_SCORE, DEFECT_SIZE, IS_DEFECT, LABEL)
from pipelines.eval_config import gated_metric, model_spec

SLICES = (CLASS_NAME, DEFECT_SIZE)


def classify_eval_config(config: DefectConfig):
    """Accuracy (gated: a floor and no regression beyond ``eval.max_accuracy_drop``),
    per-class recall and precision (top-1, one class against the rest), the confusion
    matrix and the example count; overall, by class and by annotated defect size."""
    import json

    import tensorflow_model_analysis as tfma  # noqa: PLC0415

    e = config.eval
    n_classes = len(config.data.classes)
    if n_classes < 2:
        raise ValueError(f"data.classes: the classify pipeline's metrics need the classes, got "
                         f"{list(config.data.classes)}; pass --classes A,B,... or --examples of "
                         "an ingested folder")
    overall = tfma.MetricsSpec(metrics=[
        tfma.MetricConfig(class_name="ExampleCount"),
        gated_metric("SparseCategoricalAccuracy", bound=e.min_accuracy,
                     max_change=e.max_accuracy_drop, overall_only=True),
        tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
    ])
    per_class = tfma.MetricsSpec(
        metrics=[tfma.MetricConfig(class_name=name, config=json.dumps({"top_k": 1}))
                 for name in ("Recall", "Precision")],
        binarize=tfma.BinarizationOptions(class_ids={"values": list(range(n_classes))}))
    return tfma.EvalConfig(
        model_specs=[model_spec(LABEL, "probabilities")],
        metrics_specs=[overall, per_class],
        slicing_specs=[tfma.SlicingSpec()]
        + [tfma.SlicingSpec(feature_keys=[f]) for f in SLICES])


def anomaly_eval_config(config: DefectConfig):
    """AUROC of the anomaly score (gated: a floor and no regression beyond
    ``eval.max_auroc_drop``), and at the model's own threshold: recall on defects (gated by
    ``eval.min_defect_recall``), false-alarm rate (fall-out), accuracy, precision and the
    confusion matrix; overall, by class (which defects are missed, which good class raises
    alarms) and by annotated defect size. The metrics read ``decision_score``, the score
    mapped monotonically onto [0, 1] with the threshold at 0.5."""
    import tensorflow_model_analysis as tfma  # noqa: PLC0415

    e = config.eval
    return tfma.EvalConfig(
        model_specs=[model_spec(IS_DEFECT, DECISION_SCORE)],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            gated_metric("AUC", bound=e.min_auroc, max_change=e.max_auroc_drop,
                         overall_only=True),
            gated_metric("Recall", bound=e.min_defect_recall, overall_only=True),
            tfma.MetricConfig(class_name="FallOut"),
            tfma.MetricConfig(class_name="BinaryAccuracy"),
            tfma.MetricConfig(class_name="Precision"),
            tfma.MetricConfig(class_name="ConfusionMatrixPlot"),
        ])],
        slicing_specs=[tfma.SlicingSpec()]
        + [tfma.SlicingSpec(feature_keys=[f]) for f in SLICES])


def eval_config(config: DefectConfig):
    """The mode's TFMA config."""
    return anomaly_eval_config(config) if config.mode == "anomaly" else \
        classify_eval_config(config)
