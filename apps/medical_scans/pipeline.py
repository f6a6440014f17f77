"""The medical-scans app's spec for the shared pipeline builder."""

from __future__ import annotations

from apps.medical_scans import data, preprocessing, trainer
from apps.medical_scans.config import MedicalConfig
from pipelines.builder import AppSpec

# The served output whose 0.5 crossing is the model's own decision threshold
# (trainer.thresholded_outputs): thresholded metrics are read from it, and since it ranks
# images as the positive probability does, so is the AUC.
PREDICTION_KEY = "decision_score"
GATED = ("auc", "sensitivity")


def eval_config(config: MedicalConfig):
    """AUC, accuracy, sensitivity, specificity and precision at the model's threshold,
    overall and by file-name subtype. The blessing needs AUC and sensitivity floors and no
    AUC regression beyond ``eval.max_auc_drop`` against the last blessed model, on the whole
    eval split (a subtype slice may hold one class only, where AUC is undefined)."""
    import tensorflow_model_analysis as tfma  # noqa: PLC0415

    overall = [tfma.SlicingSpec()]

    def gated(class_name: str, floor: float, max_drop: float | None = None):
        threshold = tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(lower_bound={"value": floor}))
        if max_drop is not None:
            threshold.change_threshold.CopyFrom(tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                absolute={"value": -max_drop}))
        return tfma.MetricConfig(class_name=class_name, per_slice_thresholds=[
            tfma.PerSliceMetricThreshold(slicing_specs=overall, threshold=threshold)])

    e = config.eval
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name="serving_default",
                                    label_key=preprocessing.LABEL,
                                    prediction_key=PREDICTION_KEY,
                                    model_type=tfma.constants.TF_GENERIC)],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            gated("AUC", e.min_auc, e.max_auc_drop),
            gated("Recall", e.min_sensitivity),  # sensitivity
            tfma.MetricConfig(class_name="Specificity"),
            tfma.MetricConfig(class_name="Precision"),
            tfma.MetricConfig(class_name="BinaryAccuracy"),
            tfma.MetricConfig(class_name="ConfusionMatrixPlot"),
        ])],
        slicing_specs=[*overall, tfma.SlicingSpec(feature_keys=[data.SUBTYPE])],
    )


APP = AppSpec(
    name="medical-scans",
    package="apps.medical_scans",
    preprocessing_fn=preprocessing.preprocessing_fn,
    run_fn=trainer.run_fn,
    eval_config=eval_config,
    label_key=preprocessing.LABEL,
    model_input_key=preprocessing.IMAGE_XF,
    splits=data.SPLITS,
    trainer_eval_split="validation",
)
