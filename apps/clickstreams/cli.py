"""``clickstreams``: next-item recommendation from session and interaction logs.

Only argparse is imported at start-up, so ``--help`` answers at once; TensorFlow and TFX
load when a command needs them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from suite.app_cli import (
    add_compile_arguments, add_run_arguments, add_set_argument, apply_overrides,
    compile_pipeline, pipeline_paths, run_command, say)

APP = "clickstreams"
FORMATS = ("session-tsv", "diginetica", "movielens", "csv")  # config.FORMATS, without imports

DESCRIPTION = """\
Next-item recommendation: learns from session click logs or user interaction histories
which item a user will look at next, and deploys a model that returns the top-k item ids
for a history, for TF Serving and as TFLite files for the edge.

Data: one event log file. session-tsv: SessionId<TAB>ItemId<TAB>Time (unix seconds);
diginetica: sessionId;userId;itemId;timeframe;eventdate; movielens: user item rating
timestamp (u.data); csv: a header naming session, item and time columns (--columns). Events
are ordered per session (or user) by time; the newest events are kept for evaluation (never
a random split). The model must beat the better of two baselines computed on the same split
(most popular items; items that followed the last item) on MRR@20 to be deployed.
"""

EXAMPLES = """\
examples:
  clickstreams run                                      # demo: generated log, tiny preset
  clickstreams run --data yoochoose.tsv --format session-tsv --preset default
  clickstreams run --data train-item-views.csv --format diginetica --preset default
  clickstreams run --data u.data --format movielens --model gru
  clickstreams run --data events.csv --format csv --columns session,product,time,event
  clickstreams recommend --model workspace/serving/models/clickstreams --history 214 87 -k 10
  clickstreams compile --target kubeflow-v2 --image gcr.io/acme/suite:1 --out pipeline.json
"""


def add_config_args(p: argparse.ArgumentParser) -> None:
    """The configuration arguments of run, compile and the benchmark."""
    p.add_argument("--preset", default="tiny", choices=["tiny", "default", "full"],
                   help="size of histories, model and training (tiny: a minute on a laptop; "
                        "default: the benchmark setting)")
    p.add_argument("--format", choices=FORMATS, help="event log format (default: session-tsv)")
    p.add_argument("--model", choices=["sasrec", "gru"],
                   help="sasrec (causal self-attention; the default) or gru")
    p.add_argument("--loss", choices=["full", "sampled"],
                   help="full softmax (default) or sampled softmax (large vocabularies)")
    p.add_argument("--separator", help="field separator (default: the format's; ' ' = spaces)")
    p.add_argument("--columns", metavar="SESSION,ITEM,TIME[,EVENT]",
                   help="column names of the session (or user), item, time and optionally "
                        "event type (csv and other logs with a header)")
    p.add_argument("--time-format",
                   help="unix, unix_ms, iso or a strptime pattern such as '%%Y-%%m-%%d %%H:%%M'")
    p.add_argument("--epochs", type=int, help="training epochs (overrides the preset)")
    add_set_argument(p)


def config_from_args(args):
    """The preset with the command line's overrides applied."""
    from apps.clickstreams.config import preset

    config = preset(args.preset)
    columns = args.columns.split(",") if args.columns else []
    if columns and not 3 <= len(columns) <= 4:
        raise ValueError(f"--columns {args.columns!r}: expected SESSION,ITEM,TIME[,EVENT]")
    names = dict(zip(("session_column", "item_column", "time_column", "event_column"),
                     columns, strict=False))
    overrides = {f"data.{k}": v for k, v in names.items()}
    overrides.update({
        "data.format": args.format,
        "data.separator": args.separator,
        "data.time_format": args.time_format,
        "model.kind": args.model,
        "train.loss": args.loss,
        "train.epochs": args.epochs,
    })
    return apply_overrides(config, overrides, args.set)


def with_baselines(config, ingested):
    """The config with the eval gate filled from the ingestion: the better baseline's MRR@20
    and the catalog size (the eval config stays a pure function of the config)."""
    best = ingested.baselines[ingested.better_baseline]["mrr@20"]
    return dataclasses.replace(config, eval=dataclasses.replace(
        config.eval, baseline_mrr20=best, catalog_size=ingested.catalog_size))


def cmd_run(args) -> int:
    """Ingests the log, computes the baselines and runs the whole pipeline; prints the model
    against the baselines and where the served and edge models are."""
    from suite.quiet import quiet

    quiet()
    from apps.clickstreams import data
    from suite.config import to_dict

    config = config_from_args(args)
    workspace = os.path.abspath(args.workspace)
    path = args.data
    if path is None:
        path = os.path.join(workspace, APP, "generated", f"events.{config.data.format}")
        if not os.path.exists(path):
            say(f"no --data given: generating a {config.data.format} event log in {path}")
            data.generate_synthetic(path, config.data.format, n_sessions=1000, n_items=60,
                                    n_clusters=6)
    say(f"reading {config.data.format} events from {path}")
    ingested = data.ingest(path, config.data, os.path.join(workspace, APP, "examples"),
                           progress=say)
    say(f"examples: {ingested.counts} -> {ingested.examples_dir}")
    print_baselines(ingested)
    config = with_baselines(config, ingested)

    paths = pipeline_paths(workspace, APP, ingested.examples_dir, args.serving_dir)
    os.makedirs(os.path.dirname(paths.metadata_path), exist_ok=True)
    config_path = os.path.join(workspace, APP, "config.json")
    with open(config_path, "w") as f:
        json.dump({"preset": args.preset, "data": os.path.abspath(path),
                   "runner": args.runner, "config": to_dict(config),
                   "paths": dataclasses.asdict(paths)}, f, indent=2)
    say(f"effective config written to {config_path}")

    from apps.clickstreams.pipeline import APP as SPEC
    from pipelines.builder import create_pipeline
    from pipelines.results import latest_run
    from pipelines.runners import beam_args, run_local

    say("running the pipeline (ExampleGen, statistics, schema, validation, transform, "
        "training, evaluation against the baselines, push, TFLite)")
    pipeline = create_pipeline(SPEC, config, paths, beam_pipeline_args=beam_args(args.runner),
                               enable_cache=not args.no_cache)
    run_local(pipeline)
    summary = latest_run(paths.metadata_path, SPEC.name)
    print_summary(summary, ingested)
    return 0 if summary.blessed else 3


def print_baselines(ingested) -> None:
    """The baselines' metrics on the eval split."""
    from apps.clickstreams.ranking import METRICS

    for name, values in sorted(ingested.baselines.items()):
        print(f"  baseline {name:<13} " + "  ".join(f"{k} {values[k]:.4f}" for k in METRICS))


def print_summary(summary, ingested) -> None:
    """Prints the model's metrics, its lift over the better baseline, the blessing and where
    the served and edge models are."""
    from apps.clickstreams.metrics import NAMES
    from pipelines.results import evaluation_metrics

    print()
    cached = sorted(n for n, s in summary.states.items() if s == "CACHED")
    if cached:
        print(f"reused from cache: {', '.join(cached)}")
    if summary.evaluation_uri:
        overall = evaluation_metrics(summary.evaluation_uri).get("overall", {})
        values = {k: overall.get(name) for k, name in NAMES.items()}
        count = overall.get("example_count")
        print(f"  model {'':<16}" + "  ".join(
            f"{k} {v:.4f}" for k, v in values.items() if v is not None)
            + (f"  ({int(count)} eval examples)" if count else ""))
        best = ingested.baselines[ingested.better_baseline]["mrr@20"]
        if values["mrr@20"] is not None and best > 0:
            print(f"  MRR@20 lift over {ingested.better_baseline}: "
                  f"{values['mrr@20'] / best:.3f}x")
        last = overall.get(f"{NAMES['mrr@20']}/baseline")
        if last is not None:
            print(f"  last blessed model: mrr@20 {last:.4f} "
                  f"(change {overall.get(NAMES['mrr@20'] + '/diff', 0.0):+.4f})")
    print(f"blessed: {'yes' if summary.blessed else 'NO (thresholds not met; nothing pushed)'}")
    if summary.pushed:
        print(f"TF Serving model: {summary.pushed_destination}")
    if summary.edge_dir:
        print(f"TFLite models:    {summary.edge_dir}")
        with open(os.path.join(summary.edge_dir, "report.json")) as f:
            report = json.load(f)
        print(f"  on {report['n_examples']} held-out examples; the Keras model's recall@"
              f"{report['k']}: {report['reference']['recall_at_k']:.4f}")
        for variant, r in report["variants"].items():
            print(f"  {variant:<14} {r['size_bytes'] / 1024:8.1f} KiB  "
                  f"{r['latency_ms_mean']:7.3f} ms  recall@{report['k']} "
                  f"{r['recall_at_k']:.4f}  top-{report['k']} agreement {r['agreement']:.4f}")
        for variant, reason in report.get("skipped", {}).items():
            print(f"  {variant:<14} skipped: {reason[:200]}")
        for name, file in report.get("vocabularies", {}).items():
            print(f"  vocabulary {name}: {file} (line j = output j = input id j + 1)")


def cmd_recommend(args) -> int:
    """Recommends the next items for a history with a pushed model (a version folder or
    the model base path)."""
    from suite.quiet import quiet

    quiet()
    from apps.clickstreams import data
    from serving.export import resolve_model_dir

    model_dir = resolve_model_dir(args.model)
    import tensorflow as tf

    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    outputs = serve(examples=tf.constant(data.history_examples([args.history]), tf.string))
    items = [i.decode() for i in outputs["items"].numpy()[0]]
    scores = outputs["scores"].numpy()[0].tolist()
    if args.k > len(items):
        raise ValueError(f"-k {args.k}: the model at {model_dir} returns at most "
                         f"{len(items)} items")
    print(f"model: {model_dir}")
    print(f"history: {' '.join(args.history) or '(empty: the most popular items)'}")
    for rank, (item, score) in enumerate(zip(items[:args.k], scores, strict=False), start=1):
        print(f"{rank:>3}. {item:<24} {score:.4f}")
    return 0


def cmd_generate(args) -> int:
    """Writes a synthetic event log (sessions walking item clusters) for trying the app."""
    from apps.clickstreams import data

    out = data.generate_synthetic(args.out, args.format, n_sessions=args.sessions,
                                  n_items=args.items, seed=args.seed)
    print(f"wrote a {args.format} event log to {out}")
    return 0


def cmd_compile(args) -> int:
    """Compiles the same pipeline into a Kubeflow Pipelines / Vertex AI spec; the eval gate
    comes from the examples' summary.json when it is readable here."""
    from suite.quiet import quiet

    quiet()
    from apps.clickstreams.data import IngestResult
    from apps.clickstreams.pipeline import APP as SPEC
    from suite import examples_io

    config = config_from_args(args)
    if args.examples and examples_io.is_complete(args.examples):
        ingested = IngestResult.from_summary(args.examples,
                                             examples_io.read_summary(args.examples))
        config = with_baselines(config, ingested)
    elif config.eval.baseline_mrr20 <= 0:
        print("note: no ingestion summary at --examples; the blessing only requires no "
              "regression (set eval.baseline_mrr20 to gate on the baselines)", file=sys.stderr)
    return compile_pipeline(SPEC, config, args, APP)


def build_parser() -> argparse.ArgumentParser:
    """The command line of the app."""
    parser = argparse.ArgumentParser(
        prog="clickstreams", description=DESCRIPTION, epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train, evaluate and deploy a recommender from a log",
                         description=cmd_run.__doc__)
    run.add_argument("--data", metavar="FILE",
                     help="event log (default: generate a demo log)")
    add_config_args(run)
    add_run_arguments(run, APP)
    run.set_defaults(func=cmd_run)

    rec = sub.add_parser("recommend", help="top-k next items for a history",
                         description=cmd_recommend.__doc__)
    rec.add_argument("--model", required=True, metavar="DIR",
                     help="pushed model: a version folder or the model base path (newest)")
    rec.add_argument("--history", nargs="*", default=[], metavar="ITEM",
                     help="item ids, oldest first (none: the most popular items)")
    rec.add_argument("-k", type=int, default=20, help="how many items (default: 20)")
    rec.set_defaults(func=cmd_recommend)

    gen = sub.add_parser("generate", help="write a synthetic event log",
                         description=cmd_generate.__doc__)
    gen.add_argument("--out", required=True, metavar="FILE")
    gen.add_argument("--format", default="session-tsv", choices=FORMATS)
    gen.add_argument("--sessions", type=int, default=2000)
    gen.add_argument("--items", type=int, default=200)
    gen.add_argument("--seed", type=int, default=0)
    gen.set_defaults(func=cmd_generate)

    comp = sub.add_parser("compile", help="write a Kubeflow Pipelines / Vertex AI spec",
                          description=cmd_compile.__doc__)
    add_compile_arguments(comp, APP)
    add_config_args(comp)
    comp.set_defaults(func=cmd_compile)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``clickstreams``."""
    return run_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
