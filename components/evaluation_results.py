"""What the Evaluator (TFMA) wrote, read back: metrics and plots per slice, the blessing's
thresholds and which of them failed. The run summary, the run report and the model card read
TFMA's own output through these, never recomputing a figure."""

from __future__ import annotations

import json
import os


def evaluation_metrics(evaluation_uri: str) -> dict[str, dict[str, float]]:
    """TFMA metrics of an Evaluator output: slice name -> metric name -> value."""
    import tensorflow_model_analysis as tfma

    result: dict[str, dict[str, float]] = {}
    for metrics in tfma.load_metrics(evaluation_uri):
        name = _slice_name(metrics.slice_key.single_slice_keys)
        values = result.setdefault(name, {})
        for key_and_value in metrics.metric_keys_and_values:
            key, value = key_and_value.key, key_and_value.value
            if not value.HasField("double_value"):
                continue
            label = key.name
            if key.sub_key.HasField("class_id"):
                label = f"{label}/class_{key.sub_key.class_id.value}"
            if key.is_diff:
                label = f"{label}/diff"
            elif key.model_name == tfma.BASELINE_KEY:
                # With a baseline the candidate and the last blessed model share metric names.
                label = f"{label}/baseline"
            values[label] = value.double_value.value
    return result


def _slice_value(key) -> str:
    kind = key.WhichOneof("kind")
    value = getattr(key, kind)
    return value.decode() if isinstance(value, bytes) else str(value)

def plots(evaluation_uri: str) -> dict[str, dict]:
    """TFMA plots of an Evaluator output, slice name -> plot: ``confusion_matrix`` (a
    multi-class [actual][predicted] matrix of example counts) and ``thresholds`` (a binary
    classifier's counts per threshold: threshold, tp, fp, tn, fn, precision, recall)."""
    import tensorflow_model_analysis as tfma

    result: dict[str, dict] = {}
    for plot in tfma.load_plots(evaluation_uri):
        if any(kv.key.model_name == tfma.BASELINE_KEY for kv in plot.plot_keys_and_values):
            continue
        name = _slice_name(plot.slice_key.single_slice_keys)
        out = result.setdefault(name, {})
        for key_and_value in plot.plot_keys_and_values:
            if key_and_value.key.model_name == tfma.BASELINE_KEY:
                continue
            value = key_and_value.value
            if value.HasField("multi_class_confusion_matrix_at_thresholds"):
                entries = value.multi_class_confusion_matrix_at_thresholds.matrices[0].entries
                n = 1 + max([max(e.actual_class_id, e.predicted_class_id) for e in entries],
                            default=-1)
                matrix = [[0.0] * n for _ in range(n)]
                for e in entries:
                    if e.predicted_class_id >= 0:
                        matrix[e.actual_class_id][e.predicted_class_id] = e.num_weighted_examples
                out["confusion_matrix"] = matrix
            if value.HasField("confusion_matrix_at_thresholds"):
                out["thresholds"] = [
                    {"threshold": m.threshold, "tp": m.true_positives, "fp": m.false_positives,
                     "tn": m.true_negatives, "fn": m.false_negatives,
                     "precision": m.precision, "recall": m.recall}
                    for m in value.confusion_matrix_at_thresholds.matrices]
    return result


def eval_config(evaluation_uri: str) -> dict:
    """The EvalConfig the Evaluator applied (as JSON: model specs, metrics, thresholds; TFX
    drops the change thresholds when there is no baseline model)."""
    from suite import files

    return json.loads(files.read_text(os.path.join(evaluation_uri, "eval_config.json")))[
        "evalConfig"]


def gates(evaluation_uri: str) -> list[dict]:
    """The blessing's thresholds as the Evaluator applied them, one row per metric and
    threshold: the metric, the slices it applies to, the floor or ceiling, the allowed change
    against the last blessed model, and the slices where it failed (with the value)."""
    import tensorflow_model_analysis as tfma

    config = eval_config(evaluation_uri)
    failures = []  # (metric name, slice columns, "slice: value")
    for per_slice in tfma.load_validation_result(evaluation_uri).metric_validations_per_slice:
        keys = per_slice.slice_key.single_slice_keys
        for failure in per_slice.failures:
            failures.append((_plain(failure.metric_key.name), {k.column for k in keys},
                             f"{_slice_name(keys)}: "
                             f"{failure.metric_value.double_value.value:.4f}"))
    rows = []
    for spec in config.get("metricsSpecs", []):
        for metric in spec.get("metrics", []):
            thresholds = ([(None, metric["threshold"])] if "threshold" in metric else [])
            thresholds += [([set(s.get("featureKeys", [])) for s in t.get("slicingSpecs", [])],
                            t["threshold"]) for t in metric.get("perSliceThresholds", [])]
            for slicing, threshold in thresholds:
                value = threshold.get("valueThreshold", {})
                change = threshold.get("changeThreshold", {})
                rows.append({
                    "metric": metric["className"],
                    "slices": ("every slice" if slicing is None else
                               ", ".join(",".join(sorted(s)) or "overall" for s in slicing)),
                    "lower_bound": value.get("lowerBound"),
                    "upper_bound": value.get("upperBound"),
                    "max_change": change.get("absolute"),
                    "failed": [text for name, columns, text in failures
                               if name == _plain(metric["className"])
                               and (slicing is None or columns in slicing)],
                })
    return rows


def _plain(metric_name: str) -> str:
    """A metric's class name and its TFMA name in one form (``SparseCategoricalAccuracy``,
    ``sparse_categorical_accuracy`` -> ``sparsecategoricalaccuracy``)."""
    return metric_name.replace("_", "").lower()


def _slice_name(keys) -> str:
    return ",".join(f"{k.column}={_slice_value(k)}" for k in keys) or "overall"
