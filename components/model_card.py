"""The model card of a pushed model: ``model_card.json`` and ``model_card.md``.

What the model is for and not for, and its known limitations, come from the app's
declaration (``pipelines.builder.ReportSpec``); owner, licence, intended users and contact
from the app config's ``card`` part, printed as placeholders while empty. The training data
is the ingestion summary (sizes, class balance) and the app's split rule. The metrics are
TFMA's own figures, overall and per slice, each with a bootstrap confidence interval: the
served model is run on the eval examples, the app's headline statistic (the same definition
as TFMA's headline metric) is recomputed on resamples of them, and the 2.5th and 97.5th
percentiles bound it. The decision threshold and its rule come from the export's metadata;
the training cost from its energy record (``suite.energy``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from suite import energy
from suite.files import write_atomic

PLACEHOLDER = "TO FILL IN"
MAX_EXAMPLES = 5000  # eval examples the served model is run on for the intervals


def served_outputs(model_dir: str, serialized: Sequence[bytes], prediction_key: str,
                   batch_size: int = 256) -> np.ndarray:
    """The ``serving_default`` output ``prediction_key`` of the SavedModel for each example."""
    import tensorflow as tf

    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    parts = [serve(examples=tf.constant(list(serialized[i:i + batch_size])))[prediction_key]
             .numpy() for i in range(0, len(serialized), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0,))


def feature_lists(serialized: Sequence[bytes], feature: str) -> list[list]:
    """The values of ``feature`` in each raw example (bytes decoded; [] when absent)."""
    import tensorflow as tf

    lists = []
    for data in serialized:
        entry = tf.train.Example.FromString(data).features.feature.get(feature)
        kind = entry.WhichOneof("kind") if entry is not None else None
        lists.append([v.decode() if isinstance(v, bytes) else v
                      for v in (getattr(entry, kind).value if kind else [])])
    return lists


def feature_values(serialized: Sequence[bytes], feature: str) -> list:
    """The first value of ``feature`` in each raw example (None when absent)."""
    return [values[0] if values else None for values in feature_lists(serialized, feature)]


def bootstrap_interval(statistic: Callable[[np.ndarray, np.ndarray], float],
                       labels: np.ndarray, predictions: np.ndarray, *, samples: int,
                       seed: int = 0, level: float = 0.95) -> tuple[float, float] | None:
    """The ``level`` percentile interval of ``statistic`` over ``samples`` resamples (with
    replacement) of the examples; None when no resample gives a finite value."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    values = []
    for _ in range(samples):
        index = rng.integers(0, n, n)
        value = statistic(labels[index], predictions[index])
        if np.isfinite(value):
            values.append(value)
    if not values:
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    return float(np.percentile(values, tail)), float(np.percentile(values, 100.0 - tail))


def confidence_intervals(statistic: Callable, labels: Sequence, predictions: np.ndarray,
                         slices: Mapping[str, Sequence], tfma_values: Mapping[str, float], *,
                         samples: int) -> dict[str, dict]:
    """Slice name -> TFMA's value, the bootstrap interval and the example count; ``slices``
    maps a slicing feature to its value per example ("overall" needs none)."""
    labels = np.asarray(labels)
    groups = {"overall": np.arange(len(labels))}
    for feature, values in slices.items():
        values = np.asarray([str(v) for v in values])
        for value in sorted(set(values)):
            groups[f"{feature}={value}"] = np.flatnonzero(values == value)
    out = {}
    for name, index in groups.items():
        if not np.isfinite(tfma_values.get(name, np.nan)) or len(index) < 2:
            continue
        interval = bootstrap_interval(statistic, labels[index], predictions[index],
                                      samples=samples)
        out[name] = {"value": tfma_values[name], "examples": int(len(index)),
                     "ci95": list(interval) if interval else None}
    return out


def _filled(value: str, field: str) -> str:
    return value or f"{PLACEHOLDER} (set --set card.{field}=...)"


def build_card(*, app: str, model_name: str, version: str, pushed_dir: str,
               code_version: str, config: Mapping[str, Any], spec: Mapping[str, Any],
               metadata: Mapping[str, Any], metrics: Mapping[str, Mapping[str, float]],
               headline: str, intervals: Mapping[str, dict], interval_note: str,
               data_summary: Mapping[str, Any], gates: Sequence[dict]) -> dict:
    """The model card as a JSON-ready dict (``spec``: the app's ReportSpec as a dict)."""
    card_config = config.get("card", {})
    overall = metrics.get("overall", {})
    gap = float(card_config.get("max_slice_gap", 0.05))
    limitations = list(spec.get("limitations", ()))
    if headline in overall:
        floor = overall[headline] - gap
        for name, values in sorted(metrics.items()):
            if name != "overall" and values.get(headline, floor) < floor:
                limitations.append(
                    f"slice {name}: {headline} {values[headline]:.4f}, more than {gap} below "
                    f"the overall {overall[headline]:.4f}")
    energy = metadata.get("training_energy") or {}
    return {
        "model": {"name": model_name, "app": app, "version": version, "location": pushed_dir,
                  "code_version": code_version, "family": spec.get("family", "")},
        "owner": _filled(card_config.get("owner", ""), "owner"),
        "licence": _filled(card_config.get("licence", ""), "licence"),
        "intended_users": _filled(card_config.get("intended_users", ""), "intended_users"),
        "contact": _filled(card_config.get("contact", ""), "contact"),
        "intended_use": spec.get("intended_use", ""),
        "not_for": spec.get("not_for", ""),
        "training_data": {
            "format": config.get("data", {}).get("format"),
            "examples_per_split": data_summary.get("counts", {}),
            "class_balance": data_summary.get("class_counts", {}),
            "split_rule": spec.get("split_rule", ""),
        },
        "metrics": {"headline": headline, "source": "TFMA (the pipeline's Evaluator)",
                    "overall": dict(overall),
                    "slices": {k: dict(v) for k, v in metrics.items() if k != "overall"},
                    "confidence_intervals": dict(intervals),
                    "interval_method": interval_note},
        "blessing": [dict(g) for g in gates],
        "decision": ({"threshold": metadata["threshold"],
                      "rule": metadata.get("threshold_rule", ""),
                      "details": metadata.get("decision_details", [])}
                     if "threshold" in metadata else
                     {"threshold": None, "rule": spec.get("decision_rule", "")}),
        "limitations": limitations,
        "training_cost": energy,
    }


def _or_dash(value: Any) -> str:
    return "-" if value is None else str(value)


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def card_markdown(card: Mapping[str, Any]) -> str:
    """The card as Markdown for people."""
    model, data, metrics = card["model"], card["training_data"], card["metrics"]
    lines = [f"# Model card: {model['name']} version {model['version']}", "",
             f"- App: {model['app']}; model family: {model['family']}",
             f"- Location: `{model['location']}`",
             f"- Code version: `{model['code_version']}`",
             f"- Owner: {card['owner']}", f"- Licence: {card['licence']}",
             f"- Intended users: {card['intended_users']}", f"- Contact: {card['contact']}",
             "", "## What it is for", "", card["intended_use"] or PLACEHOLDER, "",
             "## What it is not for", "", card["not_for"] or PLACEHOLDER, "",
             "## Training data", "", f"- Format: {data['format']}",
             "- Examples per split: " + (", ".join(
                 f"{k} {v}" for k, v in data["examples_per_split"].items()) or "not recorded"),
             f"- Split rule: {data['split_rule'] or 'not declared'}"]
    balance = data["class_balance"]
    if isinstance(balance, dict) and balance:
        lines += ["", "| split | " + " | ".join(next(iter(balance.values()))) + " |",
                  "|---|" + "---|" * len(next(iter(balance.values())))]
        lines += [f"| {split} | " + " | ".join(str(n) for n in counts.values()) + " |"
                  for split, counts in balance.items()]
    lines += ["", "## Metrics", "",
              f"Point values: {metrics['source']}. {metrics['interval_method']}", "",
              f"| slice | {metrics['headline']} | 95% interval | examples |", "|---|---|---|---|"]
    for name, entry in metrics["confidence_intervals"].items():
        ci = entry["ci95"]
        lines.append(f"| {name} | {entry['value']:.4f} | "
                     + (f"{ci[0]:.4f} to {ci[1]:.4f}" if ci else "undefined")
                     + f" | {entry['examples']} |")
    lines += ["", "All overall figures: " + ", ".join(
        f"{k} {_number(v)}" for k, v in sorted(metrics["overall"].items())
        if "/" not in k or k.startswith("recall/")), ""]
    lines += ["## Blessing thresholds", "", "| metric | slices | floor | ceiling | max change | "
              "failed |", "|---|---|---|---|---|---|"]
    lines += [f"| {g['metric']} | {g['slices']} | {_or_dash(g['lower_bound'])} | "
              f"{_or_dash(g['upper_bound'])} | {_or_dash(g['max_change'])} | "
              f"{'; '.join(g['failed']) or 'none'} |" for g in card["blessing"]]
    lines += ["", "A change limit applies only when there is a blessed model to compare with."]
    decision = card["decision"]
    lines += ["", "## Decision rule", "",
              (f"Threshold {decision['threshold']:.4f}, chosen by {decision['rule']}."
               if decision["threshold"] is not None else decision["rule"] or "not declared"),
              *([""] + [f"- {text}" for text in decision["details"]]
                if decision.get("details") else []),
              "", "## Known limitations", ""]
    lines += [f"- {text}" for text in card["limitations"]] or ["- none recorded"]
    cost = card["training_cost"]
    lines += ["", "## Training cost", "",
              energy.summary_line(cost) if cost else "not measured", ""]
    return "\n".join(lines)


CARD_JSON, CARD_MD = "model_card.json", "model_card.md"


def write_card(card: Mapping[str, Any], folder: str) -> None:
    """Writes ``model_card.json`` and ``model_card.md`` into ``folder``."""
    write_atomic(os.path.join(folder, CARD_JSON), json.dumps(card, indent=2, default=str))
    write_atomic(os.path.join(folder, CARD_MD), card_markdown(card))
