"""TFMA evaluation configs the apps share: metrics, slices and blessing thresholds."""

from __future__ import annotations

import json
from collections.abc import Sequence

import suite  # noqa: F401  (Keras policy before TensorFlow)


def model_spec(label_key: str, prediction_key: str):
    """TFMA's view of a suite export: its ``serving_default`` signature on serialized
    examples, the label feature and the served output that metrics read."""
    import tensorflow_model_analysis as tfma

    return tfma.ModelSpec(signature_name="serving_default", label_key=label_key,
                          prediction_key=prediction_key, model_type=tfma.constants.TF_GENERIC)


def gated_metric(class_name: str, *, bound: float | None = None, max_change: float | None = None,
                 higher_is_better: bool = True, overall_only: bool = False,
                 module: str | None = None, config: dict | None = None):
    """A TFMA metric that gates the blessing: ``bound`` is a floor (or, when lower is better,
    a ceiling) and ``max_change`` the largest move for the worse against the last blessed
    model. ``overall_only`` applies the gate to the whole eval split only (slices that may
    hold one class, where the metric is undefined, are reported but not gated)."""
    import tensorflow_model_analysis as tfma

    threshold = tfma.MetricThreshold()
    if bound is not None:
        side = "lower_bound" if higher_is_better else "upper_bound"
        threshold.value_threshold.CopyFrom(
            tfma.GenericValueThreshold(**{side: {"value": bound}}))
    if max_change is not None:
        threshold.change_threshold.CopyFrom(tfma.GenericChangeThreshold(
            direction=(tfma.MetricDirection.HIGHER_IS_BETTER if higher_is_better
                       else tfma.MetricDirection.LOWER_IS_BETTER),
            absolute={"value": -max_change if higher_is_better else max_change}))
    extra = {"module": module} if module else {}
    if config:
        extra["config"] = json.dumps(config)
    if overall_only:
        return tfma.MetricConfig(class_name=class_name, per_slice_thresholds=[
            tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()],
                                         threshold=threshold)], **extra)
    return tfma.MetricConfig(class_name=class_name, threshold=threshold, **extra)


def classification_eval_config(
    *,
    label_key: str,
    n_classes: int,
    min_accuracy: float,
    max_accuracy_drop: float,
    min_class_recall: float = 0.0,
    slice_features: Sequence[str] = (),
    prediction_key: str = "probabilities",
):
    """Accuracy over the whole eval split and each of ``slice_features``' slices (gated: a
    floor, and no regression beyond ``max_accuracy_drop`` against the last blessed model),
    and per class: accuracy on the slice of the examples of a class is that class's top-1
    recall, gated by ``min_class_recall`` (so an overall figure cannot hide a collapsed
    class; a class without eval examples has no slice). Also the per-class recall as TFMA
    reports it, the confusion matrix and the example count."""
    import tensorflow_model_analysis as tfma

    slices = [tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=[f]) for f in slice_features]
    by_class = [tfma.SlicingSpec(feature_keys=[label_key])]
    accuracy = tfma.MetricConfig(class_name="SparseCategoricalAccuracy", per_slice_thresholds=[
        tfma.PerSliceMetricThreshold(slicing_specs=slices, threshold=tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(lower_bound={"value": min_accuracy}),
            change_threshold=tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                absolute={"value": -max_accuracy_drop}))),
        tfma.PerSliceMetricThreshold(slicing_specs=by_class, threshold=tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(
                lower_bound={"value": min_class_recall})))])
    overall = tfma.MetricsSpec(metrics=[
        tfma.MetricConfig(class_name="ExampleCount"),
        accuracy,
        tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
    ])
    # One-vs-rest per class with the top-1 prediction: the recall of each class.
    per_class = tfma.MetricsSpec(
        metrics=[tfma.MetricConfig(class_name="Recall", config=json.dumps({"top_k": 1}))],
        binarize=tfma.BinarizationOptions(class_ids={"values": list(range(n_classes))}),
    )
    return tfma.EvalConfig(
        model_specs=[model_spec(label_key, prediction_key)],
        metrics_specs=[overall, per_class],
        slicing_specs=slices + by_class,
    )
