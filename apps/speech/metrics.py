"""TFMA metrics of the speech app's transcribe mode: string accuracy and character error
rate of the decoded digit strings.

The served model returns the decoded string (``digits``); the label is the example's raw
``transcript``. Each metric is a ``tfma.metrics.Metric`` whose Beam combiner accumulates
edit distances (``apps.speech.strings.character_errors``), so the Evaluator, the trainer's
validation and the benchmark compute one definition. Referenced from the eval config by
module path (``MetricConfig(class_name=..., module="apps.speech.metrics")``).
"""

from __future__ import annotations

from collections.abc import Iterable

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types, metric_util

from apps.speech.strings import character_errors


def _text(value) -> str:
    value = np.asarray(value).reshape(-1)
    if value.size == 0:
        return ""
    item = value[0]
    return item.decode() if isinstance(item, bytes) else str(item)


class _Accumulator:
    """Edits, reference characters, exact strings and strings seen."""

    def __init__(self):
        self.edits, self.chars, self.exact, self.count = 0, 0, 0, 0

    def add(self, reference: str, hypothesis: str) -> None:
        self.edits += character_errors(reference, hypothesis)
        self.chars += len(reference)
        self.exact += reference == hypothesis
        self.count += 1

    def merge(self, other: _Accumulator) -> None:
        self.edits += other.edits
        self.chars += other.chars
        self.exact += other.exact
        self.count += other.count

    def result(self, metric: str) -> float:
        if metric == "cer":
            return self.edits / self.chars if self.chars else 0.0
        return self.exact / self.count if self.count else 0.0


class _StringCombiner(beam.CombineFn):
    """Accumulates decoded strings against the transcripts; outputs one metric."""

    def __init__(self, key: metric_types.MetricKey, eval_config, metric: str):
        self._key = key
        self._eval_config = eval_config
        self._metric = metric

    def create_accumulator(self) -> _Accumulator:
        return _Accumulator()

    def add_input(self, accumulator: _Accumulator,
                  element: metric_types.StandardMetricInputs) -> _Accumulator:
        for label, prediction, _ in metric_util.to_label_prediction_example_weight(
                element, eval_config=self._eval_config, model_name=self._key.model_name,
                output_name=self._key.output_name, flatten=False):
            accumulator.add(_text(label), _text(prediction))
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[_Accumulator]) -> _Accumulator:
        accumulators = iter(accumulators)
        result = next(accumulators)
        for accumulator in accumulators:
            result.merge(accumulator)
        return result

    def extract_output(self, accumulator: _Accumulator) -> dict[metric_types.MetricKey, float]:
        return {self._key: accumulator.result(self._metric)}


def _computations(metric: str):
    def computations(name: str, eval_config=None, model_name: str = "", output_name: str = "",
                     sub_key=None, aggregation_type=None, class_weights=None,
                     example_weighted: bool = False) -> metric_types.MetricComputations:
        del aggregation_type, class_weights
        key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name,
                                     sub_key=sub_key, example_weighted=example_weighted)
        return [metric_types.MetricComputation(
            keys=[key], preprocessors=None,
            combiner=_StringCombiner(key, eval_config, metric))]

    return metric_util.merge_per_key_computations(computations)


class StringAccuracy(metric_types.Metric):
    """Share of recordings whose decoded digit string equals the transcript."""

    def __init__(self, name: str = "string_accuracy"):
        super().__init__(_computations("string_accuracy"), name=name)


class CharacterErrorRate(metric_types.Metric):
    """Substitutions, insertions and deletions over the transcripts' digits."""

    def __init__(self, name: str = "character_error_rate"):
        super().__init__(_computations("cer"), name=name)


# TFMA names of the metrics.
NAMES: dict[str, str] = {"string accuracy": "string_accuracy",
                         "CER": "character_error_rate"}
