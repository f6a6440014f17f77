"""The run report, the model card and the data profile of a pipeline run.

The last step of every app's pipeline, after the TFLite export (so after the Pusher, and it
runs whether or not anything was pushed). It writes ``report.html`` (``report_html``) into
its output: training curves from the Trainer's TensorBoard logs; TFMA's metrics overall and
per slice and its plots (confusion matrix; ROC and PR curves of a binary classifier; a
ranker's figures by history length, from the served model's own rankings); the blessing with
each threshold and the comparison with the last blessed model; the TFLite variants and the
gate's verdicts; explanation samples (``explain_samples``); the data statistics and
ExampleValidator's anomalies; the effective config and the code version. When the model was
pushed, the report, the model card (``model_card``) and the training data's schema and
statistics (``serving.drift``'s profile, for ``suite drift``) go into the pushed version's
``assets.extra/``.
"""


import json
import os
from typing import Any

import suite  # noqa: F401  (Keras policy before TensorFlow)
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts
from tfx.types.artifact import Artifact

from components import evaluation_results, model_card
from components import report_html as page
from components.tflite_export import REPORT as EDGE_REPORT
from components.tflite_export import EdgeModels, read_serialized, split_files
from serving import drift
from suite import energy, examples_io, files
from suite.config import import_dotted

REPORT = "report.html"
ASSETS_EXTRA = "assets.extra"
# What this step adds to a pushed version: not part of the model, so left out of the
# pusher's fingerprint (components.atomic_pusher).
ADDED_AFTER_PUSH = (*(f"{ASSETS_EXTRA}/{name}" for name in
                      (REPORT, model_card.CARD_JSON, model_card.CARD_MD)),
                    drift.PROFILE_DIR.replace(os.sep, "/") + "/")
# Buckets of a ranker's history length for its figures by length.
LENGTH_BUCKETS = ((1, 1), (2, 2), (3, 4), (5, 9), (10, 10**9))


class RunReport(Artifact):
    """The report (and, when pushed, the model card) of one pipeline run."""

    TYPE_NAME = "components.RunReport"  # importable as such (components/__init__)


def training_curves(log_dir: str) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Per-epoch scalars of the TensorBoard logs under ``log_dir``: tag -> run (the
    sub-folder: train, validation) -> [(epoch, value)]."""
    import tensorflow as tf

    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
    found = files.walk_files(log_dir) if files.isdir(log_dir) else []
    for relative in (f for f in found if "events.out.tfevents." in f.rsplit("/", 1)[-1]):
        path = f"{log_dir.rstrip('/')}/{relative}"
        run = relative.rsplit("/", 1)[0] if "/" in relative else "."
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if not value.tag.startswith("epoch_") or not value.HasField("tensor"):
                    continue
                number = tf.make_ndarray(value.tensor)
                if number.size == 1 and number.dtype.kind == "f":
                    curves.setdefault(value.tag, {}).setdefault(run, []).append(
                        (int(event.step), float(number)))
    return {tag: {run: sorted(points) for run, points in runs.items()}
            for tag, runs in curves.items()}


def statistics_rows(statistics_uri: str) -> dict[str, list[list]]:
    """Split -> one row per feature of StatisticsGen's output: name, type, examples with
    it, missing share, then mean, std, min, max (numbers) or unique values and the most
    frequent one (strings)."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    out = {}
    for path in files.glob(os.path.join(statistics_uri, "Split-*", "FeatureStats.pb")):
        split = os.path.basename(os.path.dirname(path)).removeprefix("Split-")
        stats = statistics_pb2.DatasetFeatureStatisticsList()
        stats.ParseFromString(files.read_bytes(path))
        rows = []
        for dataset in stats.datasets:
            for feature in dataset.features:
                name = feature.path.step[0] if feature.path.step else feature.name
                kind = statistics_pb2.FeatureNameStatistics.Type.Name(feature.type)
                if feature.HasField("num_stats"):
                    s = feature.num_stats
                    common = s.common_stats
                    rows.append([name, kind, common.num_non_missing,
                                 common.num_missing / max(dataset.num_examples, 1),
                                 s.mean, s.std_dev, s.min, s.max, None, None])
                elif feature.HasField("string_stats"):
                    s = feature.string_stats
                    common = s.common_stats
                    top = s.top_values[0].value if s.top_values else None
                    rows.append([name, kind, common.num_non_missing,
                                 common.num_missing / max(dataset.num_examples, 1),
                                 None, None, None, None, s.unique, top])
        out[split] = rows
    return out


def anomaly_rows(anomalies_uri: str) -> list[list[str]]:
    """ExampleValidator's anomalies: split, feature, severity, description."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    rows = []
    for path in files.glob(os.path.join(anomalies_uri, "Split-*", "SchemaDiff.pb")):
        split = os.path.basename(os.path.dirname(path)).removeprefix("Split-")
        anomalies = anomalies_pb2.Anomalies()
        anomalies.ParseFromString(files.read_bytes(path))
        for feature, info in sorted(anomalies.anomaly_info.items()):
            rows.append([split, feature, anomalies_pb2.AnomalyInfo.Severity.Name(info.severity),
                         info.description or info.short_description])
        if anomalies.HasField("dataset_anomaly_info"):
            info = anomalies.dataset_anomaly_info
            rows.append([split, "(dataset)", anomalies_pb2.AnomalyInfo.Severity.Name(
                info.severity), info.description])
    return rows


def _length_bucket(n: int) -> str:
    for low, high in LENGTH_BUCKETS:
        if low <= n <= high:
            return str(low) if low == high else (f"{low}-{high}" if high < 10**9 else f"{low}+")
    return "0"


def slice_label(name: str, label_key: str, classes: list[str]) -> str:
    """A slice name with the class name of a label slice (``label=0`` -> ``label=0
    (Normal)``)."""
    feature, _, value = name.partition("=")
    if feature == label_key and value.isdigit() and int(value) < len(classes):
        return f"{name} ({classes[int(value)]})"
    return name


def _by_length_figure(serialized: list[bytes], feature: str, labels: list,
                      predictions, statistics: dict) -> str:
    """The statistics on the examples grouped by the length of the list ``feature`` (a
    ranker's history), as grouped bars."""
    import numpy as np

    lengths = [len(values) for values in model_card.feature_lists(serialized, feature)]
    buckets = np.array([_length_bucket(n) for n in lengths])
    labels = np.asarray(labels)
    groups = {}
    for low, _ in LENGTH_BUCKETS:
        index = np.flatnonzero(buckets == _length_bucket(low))
        if len(index):
            groups[f"{_length_bucket(low)} (n={len(index)})"] = {
                name: statistic(labels[index], predictions[index])
                for name, statistic in statistics.items()}
    return page.image(page.bars_figure(groups, "history length",
                                       "by history length (served model)"),
                      "ranking figures by history length, computed on the served model's "
                      "rankings of the eval examples", "by history length")


def _metrics_section(metrics: dict[str, dict[str, float]], label_key: str,
                     classes: list[str]) -> str:
    """One row per slice with the candidate's figures; the per-class recalls (TFMA's
    binarized ``recall/class_i``) in a table of their own."""
    columns = sorted({k for values in metrics.values() for k in values if "/" not in k})
    names = ["overall"] + sorted(n for n in metrics if n != "overall")
    parts = [page.table(["slice", *columns],
                        [[slice_label(n, label_key, classes),
                          *(metrics[n].get(k) for k in columns)] for n in names])]
    overall = metrics.get("overall", {})
    recalls = sorted((int(k.removeprefix("recall/class_")), v) for k, v in overall.items()
                     if k.startswith("recall/class_") and k.count("/") == 1)
    if recalls:
        parts.append(page.table(["class", "recall (overall)"], [
            [classes[i] if i < len(classes) else str(i), v] for i, v in recalls]))
    return "".join(parts)


def _blessing_section(blessed: bool, pushed: bool, version: str, gates: list[dict],
                      overall: dict[str, float]) -> str:
    verdict = (f"Blessed and pushed as version {version}." if pushed else
               "Blessed, but not pushed (the serving check failed or the push was refused)."
               if blessed else "Not blessed: nothing was pushed.")
    parts = [page.paragraph(verdict, "pass" if pushed else "fail"), page.table(
        ["metric", "slices", "floor", "ceiling", "max change vs last blessed", "failed on"],
        [[g["metric"], g["slices"], g["lower_bound"], g["upper_bound"], g["max_change"],
          "; ".join(g["failed"]) or "none"] for g in gates])]
    compared = sorted(k.removesuffix("/baseline") for k in overall if k.endswith("/baseline"))
    if compared:
        parts.append(page.paragraph("Candidate against the last blessed model (overall):"))
        parts.append(page.table(["metric", "candidate", "last blessed", "change"], [
            [k, overall.get(k), overall.get(f"{k}/baseline"), overall.get(f"{k}/diff")]
            for k in compared]))
    else:
        parts.append(page.paragraph("No blessed model before this one: no comparison."))
    return "".join(parts)


def _edge_section(edge_models_uri: str) -> str:
    path = os.path.join(edge_models_uri, EDGE_REPORT)
    if not files.exists(path):
        return page.paragraph("No TFLite files: the model was not pushed.")
    report = json.loads(files.read_text(path))
    metrics = sorted({k for v in report.get("variants", {}).values() for k in v
                      if k in ("accuracy", "auc", "recall_at_k", "mrr_at_k", "agreement")})
    rows = [[name, "accepted" if v.get("accepted") else "REJECTED, not published",
             v.get("size_bytes"), v.get("size_gzip_bytes"), *(v.get(m) for m in metrics),
             v.get("latency_ms_p50"), v.get("latency_ms_p99"), v.get("rejected", "")]
            for name, v in report.get("variants", {}).items()]
    parts = [page.table(["variant", "verdict", "bytes", "gzip bytes", *metrics, "p50 ms",
                         "p99 ms", "reason"], rows),
             page.paragraph(f"Ship: {report.get('ship') or 'none accepted'}")]
    parts += [page.paragraph(note) for note in report.get("notes", [])]
    parts += [page.paragraph(f"skipped {k}: {v}") for k, v in report.get("skipped", {}).items()]
    for key, what in (("front_end", "Front end the device computes"),
                      ("mcu", "Microcontroller interpreter (TFLM)")):
        if report.get(key):
            parts.append(page.paragraph(f"{what}:") + page.pre_json(report[key]))
    return "".join(parts)


def _data_section(statistics_uri: str, anomalies_uri: str, data_summary: dict) -> str:
    parts = []
    if data_summary.get("counts"):
        parts.append(page.paragraph("Examples per split: " + ", ".join(
            f"{k} {v}" for k, v in data_summary["counts"].items())))
    anomalies = anomaly_rows(anomalies_uri)
    parts.append(page.table(["split", "feature", "severity", "anomaly"], anomalies)
                 if anomalies else page.paragraph("ExampleValidator found no anomalies.",
                                                  "pass"))
    for split, rows in statistics_rows(statistics_uri).items():
        parts.append(page.paragraph(f"Split {split}:"))
        parts.append(page.table(["feature", "type", "present", "missing share", "mean", "std",
                                 "min", "max", "unique", "most frequent"], rows))
    return "".join(parts)


def build_report(*, title: str, spec: dict, config: dict, code_version: str,
                 examples_uri: str, statistics_uri: str, anomalies_uri: str, model_dir: str,
                 model_run_uri: str, evaluation_uri: str, edge_models_uri: str, blessed: bool,
                 pushed: bool, version: str, data_summary: dict, out_dir: str,
                 head_from: str, model_input_key: str) -> tuple[str, dict]:
    """The report page and the figures the model card needs (``intervals``, ...)."""
    metrics = evaluation_results.evaluation_metrics(evaluation_uri)
    gates = evaluation_results.gates(evaluation_uri)
    model_spec = evaluation_results.eval_config(evaluation_uri)["modelSpecs"][0]
    label_key, prediction_key = model_spec["labelKey"], model_spec["predictionKey"]
    overall = metrics.get("overall", {})
    classes = list(config.get("data", {}).get("classes") or [])
    sections: dict[str, str] = {}

    from serving.export import load_metadata

    metadata = load_metadata(model_dir)
    used = metadata.get(energy.METADATA_KEY)
    headline = spec.get("headline", "")
    sections["summary"] = "".join([
        page.paragraph(f"{headline}: {overall[headline]:.4f} (overall, TFMA)")
        if headline in overall else "",
        page.paragraph(("Pushed as version " + version) if pushed else "Not pushed.",
                       "pass" if pushed else "fail"),
        page.paragraph("Training energy: " + energy.summary_line(used)) if used else ""])

    curves = training_curves(os.path.join(model_run_uri, "logs"))
    sections["curves"] = (page.image(page.curves_figure(curves), "per epoch, from the "
                                     "Trainer's TensorBoard logs", "training curves")
                          if curves else page.paragraph("The Trainer wrote no per-epoch "
                                                        "scalars (no epoch-based training)."))
    sections["metrics"] = _metrics_section(metrics, label_key, classes)

    plot = evaluation_results.plots(evaluation_uri).get("overall", {})
    figures = []
    if "confusion_matrix" in plot:
        figures.append(page.image(page.confusion_figure(plot["confusion_matrix"], classes,
                                                        "overall"),
                                  "confusion matrix of the eval split (TFMA)",
                                  "confusion matrix"))
    if "thresholds" in plot:
        figures.append(page.image(page.roc_pr_figure(plot["thresholds"], "overall"),
                                  "ROC and precision-recall of the eval split (TFMA)",
                                  "ROC and PR"))

    # The served model on the eval examples: the intervals of the model card and the
    # figures TFMA has no slice for (a ranker's by history length).
    serialized = read_serialized(split_files(examples_uri, "eval"), model_card.MAX_EXAMPLES)
    statistics = {name: import_dotted(path)
                  for name, path in spec.get("statistics", {}).items()}
    intervals: dict[str, dict] = {}
    samples = int(config.get("card", {}).get("bootstrap_samples", 1000))
    if statistics and serialized:
        labels = model_card.feature_values(serialized, label_key)
        predictions = model_card.served_outputs(model_dir, serialized, prediction_key)
        slice_features = sorted({n.split("=", 1)[0] for n in metrics if "=" in n})
        slices = {f: model_card.feature_values(serialized, f) for f in slice_features}
        for name, statistic in statistics.items():
            values = {k: v[name] for k, v in metrics.items() if name in v}
            intervals[name] = model_card.confidence_intervals(
                statistic, labels, predictions, slices, values, samples=samples)
        if spec.get("length_feature"):
            figures.append(_by_length_figure(serialized, spec["length_feature"], labels,
                                             predictions, statistics))
    sections["plots"] = "".join(figures)
    sections["blessing"] = _blessing_section(blessed, pushed, version, gates, overall)
    sections["edge"] = _edge_section(edge_models_uri)

    if spec.get("explain") and serialized:
        from components.explain_samples import explanation_samples

        samples_dir = os.path.join(out_dir, "explanations")
        # Examples from across the eval split (it may be sorted by class or recording).
        found, note = explanation_samples(
            model_dir, serialized[::max(1, len(serialized) // 256)][:256],
            label_key=label_key, model_input_key=model_input_key,
            kind=spec["explain"], head_from=head_from, out_dir=samples_dir,
            class_names=classes or None)
        sections["explanations"] = "".join(
            [page.image(page.file_uri(os.path.join(samples_dir, s.file)), s.caption,
                        "explanation") for s in found] + ([page.paragraph(note)] if note else []))
    sections["data"] = _data_section(statistics_uri, anomalies_uri, data_summary)
    sections["config"] = (page.paragraph(f"Code version: {code_version}")
                          + page.pre_json(config))

    def named(by_slice: dict) -> dict:
        return {slice_label(k, label_key, classes): v for k, v in by_slice.items()}

    extras = {"metrics": named(metrics), "gates": gates,
              "intervals": {k: named(v) for k, v in intervals.items()},
              "metadata": metadata, "interval_note": (
                  f"Intervals: 95% percentile bootstrap ({samples} resamples) of the served "
                  f"model's figures on {len(serialized)} eval examples.")}
    return page.page(title, sections), extras


@component
def RunReportStep(  # noqa: N802 (TFX component names are classes)
    examples: InputArtifact[standard_artifacts.Examples],
    statistics: InputArtifact[standard_artifacts.ExampleStatistics],
    schema: InputArtifact[standard_artifacts.Schema],
    anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],
    model: InputArtifact[standard_artifacts.Model],
    model_run: InputArtifact[standard_artifacts.ModelRun],
    evaluation: InputArtifact[standard_artifacts.ModelEvaluation],
    blessing: InputArtifact[standard_artifacts.ModelBlessing],
    pushed_model: InputArtifact[standard_artifacts.PushedModel],
    edge_models: InputArtifact[EdgeModels],
    report: OutputArtifact[RunReport],
    app: Parameter[str],
    model_name: Parameter[str],
    config: Parameter[str],
    spec: Parameter[str],
    code_version: Parameter[str],
    model_input_key: Parameter[str],
    head_from: Parameter[str] = "",
    examples_dir: Parameter[str] = "",
) -> None:
    """TFX component: the run's report; with a push, also the model card and the data
    profile in the pushed version. ``config``: the app config as JSON; ``spec``: the app's
    ReportSpec as JSON (``pipelines.builder.report_parameters``)."""
    from tfx.utils import path_utils

    config_dict: dict[str, Any] = json.loads(config)
    spec_dict: dict[str, Any] = json.loads(spec)
    pushed = bool(pushed_model.get_int_custom_property("pushed"))
    blessed = files.exists(os.path.join(blessing.uri, "BLESSED"))
    version = pushed_model.get_string_custom_property("pushed_version") if pushed else ""
    pushed_dir = pushed_model.get_string_custom_property("pushed_destination") if pushed else ""
    model_dir = pushed_dir or path_utils.serving_model_path(model.uri)
    # The ingestion summary (sizes, class balance) when the examples folder is readable here.
    data_summary = (examples_io.read_summary(examples_dir)
                    if examples_dir and examples_io.is_complete(examples_dir) else {})
    title = (f"Run report: {model_name} " + (f"version {version}" if pushed else "(not pushed)")
             + f", app {app}")
    # Made in local folders (a copy of a model on an object store; matplotlib and Keras
    # write and read local files), the report folder then put in place whole.
    with files.local_tree(model_dir) as local_model, \
            files.staged_tree(report.uri, last=(REPORT,)) as out_dir:
        text, extras = build_report(
            title=title, spec=spec_dict, config=config_dict, code_version=code_version,
            examples_uri=examples.uri, statistics_uri=statistics.uri,
            anomalies_uri=anomalies.uri, model_dir=local_model, model_run_uri=model_run.uri,
            evaluation_uri=evaluation.uri, edge_models_uri=edge_models.uri, blessed=blessed,
            pushed=pushed, version=version, data_summary=data_summary, out_dir=out_dir,
            head_from=head_from, model_input_key=model_input_key)
        files.write_atomic(os.path.join(out_dir, REPORT), text)
        card = None
        if pushed:
            headline = spec_dict.get("headline", "")
            card = model_card.build_card(
                app=app, model_name=model_name, version=version, pushed_dir=pushed_dir,
                code_version=code_version, config=config_dict, spec=spec_dict,
                metadata=extras["metadata"], metrics=extras["metrics"], headline=headline,
                intervals=extras["intervals"].get(headline, {}),
                interval_note=extras["interval_note"], data_summary=data_summary,
                gates=extras["gates"])
            model_card.write_card(card, out_dir)
    report_path = os.path.join(report.uri, REPORT)
    if card is not None:
        assets = os.path.join(pushed_dir, ASSETS_EXTRA)
        model_card.write_card(card, assets)
        files.write_atomic(os.path.join(assets, REPORT), text)
        drift.write_training_profile(
            pushed_dir, os.path.join(schema.uri, "schema.pbtxt"),
            os.path.join(statistics.uri, "Split-train", "FeatureStats.pb"))
        report.set_string_custom_property("pushed_report", os.path.join(assets, REPORT))
    report.set_string_custom_property("report_path", report_path)
    report.set_int_custom_property("model_card", int(pushed))
