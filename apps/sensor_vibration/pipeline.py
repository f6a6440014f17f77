"""What the sensor-vibration app's pipeline evaluates, and what blesses a model."""

from __future__ import annotations

from apps.sensor_vibration.config import VibrationConfig
from apps.sensor_vibration.features import LABEL, LOAD
from pipelines.eval_config import classification_eval_config


def eval_config(config: VibrationConfig):
    """Accuracy floor and no-regression gate, per-class recall, confusion matrix, by load."""
    return classification_eval_config(
        label_key=LABEL,
        n_classes=len(config.data.classes),
        min_accuracy=config.eval.min_accuracy,
        max_accuracy_drop=config.eval.max_accuracy_drop,
        min_class_recall=config.eval.min_class_recall,
        slice_features=(LOAD,),
    )

