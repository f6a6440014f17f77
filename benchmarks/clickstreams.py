"""Benchmark of the clickstreams app on any session log in a supported format.

Reads the log with the app's reader (or generates a synthetic one), then runs the same code
as the pipeline without TFX: data.ingest (time split; the most-popular, Markov, session-kNN
and repeat baselines on the eval split) -> local TFT analysis -> trainer.train -> the serving
export. The served SavedModel ranks every eval example (full ranking over the item
vocabulary, no sampled negatives) and the same accumulator as the baselines and the
Evaluator scores it. Prints Recall@20, MRR@20, NDCG@10 and Coverage@20 for the model and the
four baselines; the MRR@20 lift over the best baseline on MRR@20 (the Evaluator's bar)
against the 1.15x target and the Recall@20 lift over the best baseline on Recall@20 against
the 1.05x target; the training time, the latency of one request (one serialized
tf.Example through ``serving_default``, in process), and the process's peak RSS at the end
of each phase (ingestion, training, scoring).

    .venv/bin/python benchmarks/clickstreams.py [--data FILE --format FORMAT]
        [--preset default] [--model sasrec|gru] [--sessions N --items N] [--out results.json]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import shutil
import sys
import time

import suite  # noqa: F401  (Keras policy before TensorFlow)
import numpy as np

from apps.base import cli
from apps.clickstreams import data, ranking
from apps.clickstreams.app import APP
from suite.progress import say
from suite.config import to_dict

# The model against the best baseline on each metric (issue 13).
TARGET_LIFTS = {"mrr@20": 1.15, "recall@20": 1.05}
LATENCY_REQUESTS = 200
DEFAULT_WORKSPACE = os.path.join("workspace", "benchmarks", "clickstreams")


def peak_rss_mib() -> float:
    """The process's RSS high-water mark so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def model_metrics(model_dir: str, eval_files: list[str], catalog_size: int) -> dict:
    """Full-ranking metrics of the served model's top-k on every eval example."""
    import tensorflow as tf

    from apps.clickstreams.preprocessing import NEXT_ITEM
    from suite.examples_io import raw_dataset

    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    acc = ranking.RankingAccumulator()
    spec = {NEXT_ITEM: tf.io.FixedLenFeature([], tf.string)}
    for batch in raw_dataset(eval_files).batch(512):
        items = serve(examples=batch)["items"].numpy()
        targets = tf.io.parse_example(batch, spec)[NEXT_ITEM].numpy()
        for ranked, target in zip(items, targets, strict=True):
            acc.add([i.decode() for i in ranked], target.decode())
    return acc.result(catalog_size)


def request_latency_ms(model_dir: str, example: bytes) -> dict[str, float]:
    """Wall time of one single-example request to ``serving_default`` (after warm-up)."""
    import tensorflow as tf

    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    request = tf.constant([example])
    for _ in range(10):
        serve(examples=request)
    times = []
    for _ in range(LATENCY_REQUESTS):
        start = time.perf_counter()
        serve(examples=request)["items"].numpy()
        times.append((time.perf_counter() - start) * 1000.0)
    return {"p50": float(np.median(times)), "p90": float(np.percentile(times, 90)),
            "mean": float(np.mean(times))}


def print_table(rows: dict[str, dict[str, float]]) -> None:
    """One line per recommender, one column per metric."""
    print(f"{'':<16}" + "".join(f"{m:>13}" for m in ranking.METRICS))
    for name, values in rows.items():
        print(f"{name:<16}" + "".join(f"{values[m]:>13.4f}" for m in ranking.METRICS))


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark; exit status 0 when both lift targets are met, 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", metavar="FILE", help="event log (default: generate one)")
    cli.add_config_arguments(parser, APP)
    parser.set_defaults(preset="default")
    parser.add_argument("--sessions", type=int, default=6000,
                        help="sessions of the generated log (without --data)")
    parser.add_argument("--items", type=int, default=300,
                        help="items of the generated log (without --data)")
    parser.add_argument("--workspace", default=DEFAULT_WORKSPACE, metavar="DIR")
    parser.add_argument("--out", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    from suite.quiet import quiet

    quiet()
    config = cli.config_from_args(APP, args)
    os.makedirs(args.workspace, exist_ok=True)
    path = args.data
    if path is None:
        path = os.path.join(args.workspace, f"generated-{args.sessions}x{args.items}."
                            f"{config.data.format}")
        if not os.path.exists(path):
            say(f"generating a {config.data.format} log: {args.sessions} sessions over "
                f"{args.items} items")
            data.generate_synthetic(path, config.data.format, n_sessions=args.sessions,
                                    n_items=args.items, n_clusters=max(2, args.items // 10))
    say(f"ingesting {path}")
    ingested = data.ingest(path, config.data, os.path.join(args.workspace, "examples"),
                           progress=say)
    peaks = {"ingestion": peak_rss_mib()}
    train_files = sorted(glob.glob(os.path.join(ingested.examples_dir, "train", "*")))
    eval_files = sorted(glob.glob(os.path.join(ingested.examples_dir, "eval", "*")))

    from apps.clickstreams import preprocessing, trainer
    from components import transform_local
    from serving.export import export_serving_model
    from suite.examples_io import first_examples

    transform_dir = os.path.join(args.workspace, "transform")
    shutil.rmtree(transform_dir, ignore_errors=True)
    say("TFT analysis (item vocabulary)")
    tft_output = transform_local.analyze(
        train_files, preprocessing.raw_feature_spec(config),
        lambda inputs: preprocessing.preprocessing_fn(inputs, {"config": to_dict(config)}),
        transform_dir)
    n_items = trainer.vocabulary_size(tft_output)
    say(f"training {config.model.kind} ({config.train.loss} softmax, {config.train.epochs} "
        f"epochs) on {ingested.counts['train']} examples, {n_items} items")
    start = time.perf_counter()
    model = trainer.train(trainer.streamed_examples(train_files, tft_output), None, config,
                          n_items, verbose=2)
    train_s = time.perf_counter() - start
    peaks["training"] = peak_rss_mib()
    model_dir = os.path.join(args.workspace, "serving_model")
    export_serving_model(model, tft_output, model_dir, trainer.export_spec(config, tft_output),
                         model_name=config.model_name)
    say("ranking the eval split with the served model")
    rows = {name.replace("_", " "): values
            for name, values in sorted(ingested.summary["baselines"].items())}
    rows[config.model.kind] = model_metrics(model_dir, eval_files,
                                            ingested.summary["catalog_size"])
    latency = request_latency_ms(model_dir, first_examples(eval_files, 1)[0])
    peaks["scoring"] = peak_rss_mib()

    baselines = ingested.summary["baselines"]
    lifts = {}
    for metric in TARGET_LIFTS:
        best = ranking.better_baseline(baselines, metric)
        lifts[metric] = {"baseline": best,
                         "lift": rows[config.model.kind][metric] / baselines[best][metric]}
    met = all(lifts[m]["lift"] >= target for m, target in TARGET_LIFTS.items())
    print()
    print(f"log: {path} ({ingested.summary['events']} events, {ingested.summary['sequences']} "
          f"sequences; eval: next events from {ingested.summary['eval_cutoff']} on, "
          f"{ingested.counts['eval']} examples; train: {ingested.counts['train']})")
    print_table(rows)
    for metric, target in TARGET_LIFTS.items():
        lift = lifts[metric]["lift"]
        print(f"{metric} lift over the best baseline on it "
              f"({lifts[metric]['baseline'].replace('_', ' ')}): {lift:.3f}x "
              f"(target >= {target}x: {'met' if lift >= target else 'NOT met'})")
    print(f"training time: {train_s:.1f} s ({config.train.epochs} epochs, preset "
          f"{args.preset}, {os.cpu_count()} CPU cores)")
    print(f"serving latency, one request (in-process SavedModel, serving_default): "
          f"p50 {latency['p50']:.2f} ms, p90 {latency['p90']:.2f} ms")
    print("peak memory (RSS high-water mark of this process) at the end of "
          + ", ".join(f"{phase} {mib:.0f} MiB" for phase, mib in peaks.items()))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"data": path, "config": to_dict(config), "metrics": rows,
                       "lifts": lifts, "targets": TARGET_LIFTS, "train_s": train_s,
                       "latency_ms": latency, "peak_rss_mib": peaks,
                       "counts": ingested.counts}, f, indent=2)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
