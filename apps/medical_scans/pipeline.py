"""What the medical-scans app's pipeline evaluates, and what blesses a model."""

from __future__ import annotations

from apps.medical_scans.config import MedicalConfig
from apps.medical_scans.features import LABEL, SUBTYPE
from pipelines.eval_config import gated_metric, model_spec

# The served output whose 0.5 crossing is the model's own decision threshold
# (trainer.thresholded_outputs): thresholded metrics are read from it, and since it ranks
# images as the positive probability does, so is the AUC.
PREDICTION_KEY = "decision_score"


def eval_config(config: MedicalConfig):
    """AUC, accuracy, sensitivity, specificity and precision at the model's threshold,
    overall and by file-name subtype. The blessing needs AUC, sensitivity and specificity
    floors and no
    AUC regression beyond ``eval.max_auc_drop`` against the last blessed model, on the whole
    eval split (a subtype slice may hold one class only, where AUC is undefined)."""
    import tensorflow_model_analysis as tfma  # noqa: PLC0415

    e = config.eval
    return tfma.EvalConfig(
        model_specs=[model_spec(LABEL, PREDICTION_KEY)],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            gated_metric("AUC", bound=e.min_auc, max_change=e.max_auc_drop, overall_only=True),
            gated_metric("Recall", bound=e.min_sensitivity, overall_only=True),  # sensitivity
            gated_metric("Specificity", bound=e.min_specificity, overall_only=True),
            tfma.MetricConfig(class_name="Precision"),
            tfma.MetricConfig(class_name="BinaryAccuracy"),
            tfma.MetricConfig(class_name="ConfusionMatrixPlot"),
        ])],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[SUBTYPE])],
    )

