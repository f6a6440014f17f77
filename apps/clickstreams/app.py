"""The clickstreams app, declared: next-item recommendation from event logs."""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any

from apps.base.app import App, Progress
from apps.clickstreams.config import (
    FORMATS, LOSSES, MISSING_CUSTOMER, MODEL_KINDS, SESSION_KEYS, ClickstreamConfig)
from apps.clickstreams.features import HISTORY, ITEM_IDS, LABEL, VOCABULARY


def _best_baseline(summary: dict) -> tuple[str, float]:
    """The baseline with the highest MRR@20 on the eval split and that MRR@20."""
    name = summary["better_baseline"]
    return name, summary["baselines"][name]["mrr@20"]


class Clickstreams(App):
    """Session / interaction logs -> (history, next item) split by time -> SASRec / GRU,
    blessed only when it beats the baselines computed on the same split."""

    name = "clickstreams"
    command = "clickstreams"
    about = "next-item recommendation from session / interaction logs: SASRec Transformer / GRU"
    headline_metric = ("mrr_at_20", "MRR@20")
    config_class = ClickstreamConfig
    formats = FORMATS
    models = MODEL_KINDS
    data_metavar = "FILE"
    data_help = "event log (default: generate a demo log)"
    pipeline_steps = ("ExampleGen, statistics, schema, validation, transform, training, "
                      "evaluation against the baselines, serving check, push, TFLite, report")

    def add_config_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--loss", choices=LOSSES,
                            help="full softmax (default) or sampled softmax (large "
                                 "vocabularies)")
        parser.add_argument("--separator",
                            help="field separator (default: the format's; ' ' = spaces)")
        parser.add_argument("--columns", metavar="SESSION,ITEM,TIME[,EVENT]",
                            help="column names of the session (or user), item, time and "
                                 "optionally event type (csv and other logs with a header)")
        parser.add_argument("--session-key", choices=SESSION_KEYS,
                            help="orders format: a sequence is a customer's purchases "
                                 "(default) or one order's lines")
        parser.add_argument("--missing-customer", choices=MISSING_CUSTOMER,
                            help="orders format: drop lines without a customer (default), "
                                 "or read each such order as its own sequence")
        parser.add_argument("--time-format",
                            help="unix, unix_ms, iso or a strptime pattern such as "
                                 "'%%Y-%%m-%%d %%H:%%M'")

    def overrides(self, args: argparse.Namespace) -> dict[str, Any]:
        columns = args.columns.split(",") if args.columns else []
        if columns and not 3 <= len(columns) <= 4:
            raise ValueError(f"--columns {args.columns!r}: expected SESSION,ITEM,TIME[,EVENT]")
        names = dict(zip(("session_column", "item_column", "time_column", "event_column"),
                         columns, strict=False))
        return {**{f"data.{k}": v for k, v in names.items()},
                "data.separator": args.separator, "data.time_format": args.time_format,
                "data.session_key": args.session_key,
                "data.missing_customer": args.missing_customer,
                "train.loss": args.loss}

    def demo_data(self, folder: str, config: ClickstreamConfig, progress: Progress) -> str:
        from apps.clickstreams import data

        path = os.path.join(folder, f"events.{config.data.format}")
        if not os.path.exists(path):
            progress(f"no --data given: generating a {config.data.format} event log in {path}")
            data.generate_synthetic(path, config.data.format, n_sessions=1000, n_items=60,
                                    n_clusters=6)
        return path

    def add_generate_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--sessions", type=int, default=2000)
        parser.add_argument("--items", type=int, default=200)

    def generate(self, args: argparse.Namespace) -> str:
        from apps.clickstreams import data

        return data.generate_synthetic(args.out, args.format, n_sessions=args.sessions,
                                       n_items=args.items, seed=args.seed)

    def with_ingested(self, config: ClickstreamConfig, ingested) -> ClickstreamConfig:
        """The eval gate filled from the ingestion: the best baseline's MRR@20 and the
        catalog size (the eval config stays a pure function of the config)."""
        _, best = _best_baseline(ingested.summary)
        return dataclasses.replace(config, eval=dataclasses.replace(
            config.eval, baseline_mrr20=best, catalog_size=ingested.summary["catalog_size"]))

    def ingested_lines(self, ingested) -> list[str]:
        from apps.clickstreams.ranking import METRICS

        best, _ = _best_baseline(ingested.summary)
        return [f"  baseline {name:<13} " + "  ".join(f"{k} {values[k]:.4f}" for k in METRICS)
                + ("  (best: the gate's bar)" if name == best else "")
                for name, values in sorted(ingested.summary["baselines"].items())]

    def spec(self, config: ClickstreamConfig):
        from apps.clickstreams import ranking
        from apps.clickstreams.pipeline import eval_config
        from pipelines.builder import ReportSpec, TFLiteSpec

        # A ranker: the TFLite files are checked on top-k agreement; int8 may fail to
        # convert (recorded as skipped); the vocabulary travels beside the files.
        return self.pipeline_spec(
            eval_config=eval_config, label_key=LABEL, model_input_key=ITEM_IDS,
            tflite=TFLiteSpec(top_k=ranking.TOP_K, optional_variants=("int8",),
                              vocabularies=(VOCABULARY,),
                              student="apps.clickstreams.model:student"),
            report=ReportSpec(
                explain="item_influence",
                statistics=(("mrr_at_20", ranking.mrr_at_20),
                            ("recall_at_20", ranking.recall_at_20)),
                length_feature=HISTORY,
                intended_use=(
                    "Ranks the items a shopper is likely to view or buy next from the items "
                    "of their session, for recommendation slots of a shop."),
                not_for=(
                    "Decisions about individual people (credit, pricing, eligibility), or "
                    "catalogues and shops it was not trained on; new items have no "
                    "recommendations until the model is retrained."),
                split_rule=(
                    "A time split: the newest events are the eval split (the last "
                    f"{config.data.eval_days} days)" if config.data.eval_days else
                    "A time split: the newest "
                    f"{config.data.eval_fraction:.0%} of next-item events are the eval split."),
                decision_rule="The top 20 items of the model's scores.",
                limitations=("Items below the vocabulary's minimum count are never "
                             "recommended.",)))

    def metric_lines(self, metrics, config: ClickstreamConfig, ingested) -> list[str]:
        from apps.clickstreams.metrics import NAMES

        overall = metrics.get("overall", {})
        values = {k: overall.get(name) for k, name in NAMES.items()}
        count = overall.get("example_count")
        lines = [f"  model {'':<16}" + "  ".join(
            f"{k} {v:.4f}" for k, v in values.items() if v is not None)
            + (f"  ({int(count)} eval examples)" if count else "")]
        name, best = _best_baseline(ingested.summary)
        if values["mrr@20"] is not None and best > 0:
            lines.append(f"  MRR@20 lift over the best baseline ({name}): "
                         f"{values['mrr@20'] / best:.3f}x")
        last = overall.get(f"{NAMES['mrr@20']}/baseline")
        if last is not None:
            lines.append(f"  last blessed model: mrr@20 {last:.4f} "
                         f"(change {overall.get(NAMES['mrr@20'] + '/diff', 0.0):+.4f})")
        return lines


APP = Clickstreams()
