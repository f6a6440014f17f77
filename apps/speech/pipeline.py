"""The speech app's TFMA configs, one per mode (``Speech.spec`` builds the pipeline spec of
each: ``speech`` and ``speech-transcribe``).

Transcribe mode is a pipeline of its own: its models are blessed against the last blessed
transcriber, never a keyword model. Its TFLite files hold the acoustic model (PCM -> per-frame
probabilities); their report compares those with the served model's (agreement: the
transcript is not a transformed feature), and decoding runs beside the .tflite (greedy CTC,
``apps.speech.ctc.greedy_decode``). In both modes the Trainer validates on "validation"; only
the Evaluator sees "eval".
"""

from __future__ import annotations

from apps.speech.config import SpeechConfig
from apps.speech.features import LABEL, N_DIGITS, SPEAKER, TRANSCRIPT

# The TFMA metrics of transcribe mode, by module path (imported by the Evaluator, not here:
# it loads Beam).
METRICS_MODULE = f"{__package__}.metrics"
TRANSCRIPT_KEY = "digits"  # the served output holding the decoded string
# Full-integer quantization of recurrent and attention graphs may not convert: the int8
# file is then reported as skipped instead of failing the export.
OPTIONAL_INT8 = {"dscnn": (), "kwt": ("int8",), "crnn": ("int8",)}


def keyword_eval_config(config: SpeechConfig):
    """Accuracy (gated on the whole eval split: a floor, and no drop beyond
    ``eval.max_accuracy_drop`` against the last blessed model), per-class recall and the
    confusion matrix, overall and by speaker (reported, not gated: a speaker's slice is
    small)."""
    import json  # noqa: PLC0415

    import tensorflow_model_analysis as tfma  # noqa: PLC0415

    overall = [tfma.SlicingSpec()]
    accuracy = tfma.MetricConfig(
        class_name="SparseCategoricalAccuracy",
        per_slice_thresholds=[tfma.PerSliceMetricThreshold(
            slicing_specs=overall,
            threshold=tfma.MetricThreshold(
                value_threshold=tfma.GenericValueThreshold(
                    lower_bound={"value": config.eval.min_accuracy}),
                change_threshold=tfma.GenericChangeThreshold(
                    direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                    absolute={"value": -config.eval.max_accuracy_drop})))])
    # One-vs-rest per class with the top-1 prediction: the recall of each class.
    per_class = tfma.MetricsSpec(
        metrics=[tfma.MetricConfig(class_name="Recall", config=json.dumps({"top_k": 1}))],
        binarize=tfma.BinarizationOptions(
            class_ids={"values": list(range(len(config.data.classes)))}))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name="serving_default", label_key=LABEL,
                                    prediction_key="probabilities",
                                    model_type=tfma.constants.TF_GENERIC)],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"), accuracy,
            tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot")]), per_class],
        slicing_specs=[*overall, tfma.SlicingSpec(feature_keys=[SPEAKER])],
    )


def transcribe_eval_config(config: SpeechConfig):
    """Character error rate (gated on the whole eval split: a ceiling, and no rise beyond
    ``eval.max_cer_increase`` against the last blessed model) and string accuracy, overall,
    by speaker and by string length."""
    import tensorflow_model_analysis as tfma  # noqa: PLC0415

    cer = tfma.MetricConfig(
        class_name="CharacterErrorRate", module=METRICS_MODULE,
        per_slice_thresholds=[tfma.PerSliceMetricThreshold(
            slicing_specs=[tfma.SlicingSpec()],
            threshold=tfma.MetricThreshold(
                value_threshold=tfma.GenericValueThreshold(
                    upper_bound={"value": config.eval.max_cer}),
                change_threshold=tfma.GenericChangeThreshold(
                    direction=tfma.MetricDirection.LOWER_IS_BETTER,
                    absolute={"value": config.eval.max_cer_increase})))])
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name="serving_default", label_key=TRANSCRIPT,
                                    prediction_key=TRANSCRIPT_KEY,
                                    model_type=tfma.constants.TF_GENERIC)],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            cer,
            tfma.MetricConfig(class_name="StringAccuracy", module=METRICS_MODULE),
        ])],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[SPEAKER]),
                       tfma.SlicingSpec(feature_keys=[N_DIGITS])],
    )


def eval_config(config: SpeechConfig):
    """The mode's TFMA config."""
    if config.mode == "transcribe":
        return transcribe_eval_config(config)
    return keyword_eval_config(config)
