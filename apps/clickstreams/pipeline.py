"""What the clickstreams app's pipeline evaluates, and what blesses a model."""

from __future__ import annotations

import json

from apps.clickstreams.config import ClickstreamConfig
from apps.clickstreams.features import NEXT_ITEM
from pipelines.eval_config import gated_metric, model_spec

# The TFMA metrics, by module path (imported by the Evaluator, not here: it loads Beam).
METRICS_MODULE = f"{__package__}.metrics"
PREDICTION_KEY = "items"


def min_mrr20(config: ClickstreamConfig) -> float:
    """The MRR@20 a model must reach to be blessed: the best baseline's, times min_lift."""
    return config.eval.baseline_mrr20 * config.eval.min_lift


def eval_config(config: ClickstreamConfig):
    """Full-ranking Recall@20, MRR@20 (gated: at least the best baseline's, and no drop
    beyond ``eval.max_mrr_drop`` against the last blessed model), NDCG@10 and coverage."""
    import tensorflow_model_analysis as tfma  # noqa: PLC0415

    def metric(class_name: str, **kwargs):
        return tfma.MetricConfig(class_name=class_name, module=METRICS_MODULE, **kwargs)

    return tfma.EvalConfig(
        model_specs=[model_spec(NEXT_ITEM, PREDICTION_KEY)],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            metric("RecallAt20"),
            gated_metric("MRRAt20", bound=min_mrr20(config),
                         max_change=config.eval.max_mrr_drop, module=METRICS_MODULE),
            metric("NDCGAt10"),
            metric("CoverageAt20",
                   config=json.dumps({"catalog_size": config.eval.catalog_size})),
        ])],
        slicing_specs=[tfma.SlicingSpec()],
    )

