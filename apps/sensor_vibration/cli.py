"""``sensor-vibration``: bearing fault detection from accelerometer recordings.

Only argparse is imported at start-up, so ``--help`` answers at once; TensorFlow and TFX
load when a command needs them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

from suite.app_cli import add_run_arguments

APP = "sensor_vibration"

DESCRIPTION = """\
Predictive maintenance from vibration: classifies bearing condition (normal, or ball /
inner-race / outer-race fault and its size) from accelerometer recordings, and deploys the
model for TF Serving and as TFLite files for edge gateways.

Data: a folder with recordings and a manifest.csv naming, for each file, its condition
label (column class10: Normal, B007 ... OR021), motor load (load_hp) and speed (rpm).
Recordings are CWRU-style MATLAB files (X<nnn>_DE_time, X<nnn>_FE_time keys) or CSV files
with one column per accelerometer (DE, FE, ...). Recordings are cut into windows; each
recording's last time block is kept for evaluation, so no stretch of signal is both trained
and tested on.
"""

EXAMPLES = """\
examples:
  sensor-vibration run                                  # demo: generated data, tiny preset
  sensor-vibration run --data /data/cwru --preset default
  sensor-vibration run --data /data/cwru --preset default --holdout-load 2 --model gru
  sensor-vibration predict --model workspace/serving/models/sensor_vibration pump7.mat
  sensor-vibration compile --target kubeflow-v2 --image gcr.io/acme/suite:1 --out pipeline.json
"""


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="tiny", choices=["tiny", "default", "full"],
                   help="size of windows, model and training (tiny: a minute on a laptop; "
                        "default: the benchmark setting on real CWRU data)")
    p.add_argument("--model", choices=["spectral", "wdcnn", "lstm", "gru"],
                   help="network: spectral (log power spectrum + linear read-out; the "
                        "default preset's), wdcnn (1D CNN, wide first kernel; the tiny "
                        "preset's), lstm or gru")
    p.add_argument("--format", choices=["mat", "csv"], help="recording format (default: mat)")
    p.add_argument("--channels", help="accelerometers to use, comma separated (default: DE)")
    p.add_argument("--holdout-load", type=int, metavar="HP",
                   help="evaluate only on recordings at this motor load, train on the others "
                        "(checks that the model carries over to an unseen operating point)")
    p.add_argument("--epochs", type=int, help="training epochs (overrides the preset)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                   help="override any config field, e.g. --set data.window=1024 "
                        "--set eval.min_accuracy=0.95")


def _config(args):
    from apps.sensor_vibration.config import preset, with_model_kind
    from suite.config import replace_path

    config = preset(args.preset)
    if args.model:
        config = with_model_kind(config, args.model)
    overrides = {
        "data.format": args.format,
        "data.channels": tuple(args.channels.split(",")) if args.channels else None,
        "data.holdout_load": args.holdout_load,
        "train.epochs": args.epochs,
    }
    for item in args.set:
        field, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected FIELD=VALUE")
        try:
            overrides[field] = json.loads(value)
        except json.JSONDecodeError:
            overrides[field] = value
    for field, value in overrides.items():
        if value is not None:
            config = replace_path(config, field, tuple(value) if isinstance(value, list) else value)
    return config


def _paths(workspace: str, examples_dir: str, serving_dir: str | None):
    """Where a run writes; paths or URIs (gs://...) alike."""
    from pipelines.builder import PipelinePaths

    app_ws = os.path.join(workspace, APP)
    serving = serving_dir or os.path.join(workspace, "serving")
    return PipelinePaths(
        examples_dir=examples_dir,
        pipeline_root=os.path.join(app_ws, "pipeline_root"),
        metadata_path=os.path.join(app_ws, "metadata.sqlite"),
        serving_base=os.path.join(serving, "models"),
        edge_base=os.path.join(serving, "edge"),
    )


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def cmd_run(args) -> int:
    """Ingests, validates and runs the whole pipeline; prints the evaluation and the deployment."""
    from suite.quiet import quiet

    quiet()
    from apps.sensor_vibration import data
    from suite.config import to_dict

    config = _config(args)
    workspace = os.path.abspath(args.workspace)
    data_dir = args.data
    if data_dir is None:
        data_dir = os.path.join(workspace, APP, "generated-data")
        if not os.path.exists(os.path.join(data_dir, config.data.manifest)):
            _say(f"no --data given: generating CWRU-like recordings in {data_dir}")
            # Long enough for about 8 windows' worth of signal in every time block.
            blocks_of_8_windows = 8 * config.data.window * config.data.split_blocks
            data.generate_synthetic(data_dir, fmt=config.data.format,
                                    channels=config.data.channels,
                                    n_samples=max(12000, blocks_of_8_windows))
    _say(f"reading recordings from {data_dir}")
    ingested = data.ingest(data_dir, config.data, os.path.join(workspace, APP, "examples"),
                           progress=_say)
    _say(f"windows: {ingested.counts} -> {ingested.examples_dir}")

    paths = _paths(workspace, ingested.examples_dir, args.serving_dir)
    os.makedirs(os.path.dirname(paths.metadata_path), exist_ok=True)
    config_path = os.path.join(workspace, APP, "config.json")
    with open(config_path, "w") as f:
        json.dump({"preset": args.preset, "data_dir": os.path.abspath(data_dir),
                   "runner": args.runner, "config": to_dict(config),
                   "paths": dataclasses.asdict(paths)}, f, indent=2)
    _say(f"effective config written to {config_path}")

    from apps.sensor_vibration.pipeline import APP as SPEC
    from pipelines.builder import create_pipeline
    from pipelines.results import latest_run
    from pipelines.runners import beam_args, run_local

    _say("running the pipeline (ExampleGen, statistics, schema, validation, transform, "
         "training, evaluation, push, TFLite)")
    pipeline = create_pipeline(SPEC, config, paths, beam_pipeline_args=beam_args(args.runner),
                               enable_cache=not args.no_cache)
    run_local(pipeline)
    summary = latest_run(paths.metadata_path, SPEC.name)
    print_summary(summary, config)
    return 0 if summary.blessed else 3


def print_summary(summary, config) -> None:
    """Prints the evaluation, the blessing and where the served and edge models are."""
    from pipelines.results import evaluation_metrics

    print()
    cached = sorted(n for n, s in summary.states.items() if s == "CACHED")
    if cached:
        print(f"reused from cache: {', '.join(cached)}")
    if summary.evaluation_uri:
        metrics = evaluation_metrics(summary.evaluation_uri)
        classes = config.data.classes
        for name, values in sorted(metrics.items()):
            acc = values.get("sparse_categorical_accuracy")
            count = values.get("example_count")
            line = f"  {name:<10} accuracy {acc:.4f}" if acc is not None else f"  {name:<10}"
            print(f"{line}  windows {int(count) if count else '?'}")
            if name == "overall":
                recalls = [f"{classes[i]} {values[f'recall/class_{i}']:.3f}"
                           for i in range(len(classes)) if f"recall/class_{i}" in values]
                if recalls:
                    print("  recall per class: " + ", ".join(recalls))
    print(f"blessed: {'yes' if summary.blessed else 'NO (thresholds not met; nothing pushed)'}")
    if summary.pushed:
        print(f"TF Serving model: {summary.pushed_destination}")
    if summary.edge_dir:
        print(f"TFLite models:    {summary.edge_dir}")
        with open(os.path.join(summary.edge_dir, "report.json")) as f:
            report = json.load(f)
        print(f"  on {report['n_examples']} held-out windows; the served SavedModel's accuracy "
              f"on them: {report['reference']['accuracy']:.4f}")
        for variant, r in report["variants"].items():
            print(f"  {variant:<14} {r['size_bytes'] / 1024:8.1f} KiB  "
                  f"{r['latency_ms_mean']:7.3f} ms  accuracy {r.get('accuracy', float('nan')):.4f}"
                  f"  agreement {r['agreement']:.4f}")


def cmd_predict(args) -> int:
    """Classifies recordings with a pushed model (a version folder or the model base path),
    or through a model server (--server HOST:PORT) without loading the model here."""
    from suite.quiet import quiet

    quiet()
    import numpy as np

    from apps.sensor_vibration import data

    if (args.model is None) == (args.server is None):
        raise ValueError("predict: expected either --model DIR (load the model here) or "
                         "--server HOST:PORT (ask a model server)")
    if args.server:
        from serving.clients import ServingClientError, VibrationClient

        client = VibrationClient(args.server, model=args.model_name)
        channels = tuple(args.channels.split(","))
        server_errors: tuple[type[Exception], ...] = (ServingClientError,)
        try:
            window, rest = divmod(client.window_values, len(channels))
        except server_errors as e:
            print(f"error: server {args.server}, model {args.model_name}: {e}", file=sys.stderr)
            return 2
        if rest:
            raise ValueError(f"--channels {args.channels}: the served model takes windows of "
                             f"{client.window_values} values, not a multiple of "
                             f"{len(channels)} channels")
        names: dict[int, str] = {}

        def classify(signal):
            if len(signal) < window:
                raise data.DataError(f"signal of {len(signal)} samples is shorter than one "
                                     f"window ({window} samples)")
            windows = np.stack([signal[s:s + window]
                                for s in range(0, len(signal) - window + 1, window)])
            result = client.predict(windows)
            names.update(zip(result.class_ids.tolist(), result.labels, strict=True))
            return result.probabilities

        print(f"server: {args.server} (model {args.model_name})")
    else:
        from apps.sensor_vibration.config import VibrationConfig
        from serving.export import load_metadata, resolve_model_dir
        from suite.config import from_dict

        model_dir = resolve_model_dir(args.model)
        config = from_dict(VibrationConfig, load_metadata(model_dir)["config"])
        import tensorflow as tf

        serve = tf.saved_model.load(model_dir).signatures["serving_default"]
        channels = config.data.channels
        names = dict(enumerate(config.data.classes))
        server_errors = ()

        def classify(signal):
            examples = data.signal_examples(signal, config.data)
            return serve(examples=tf.constant(examples, tf.string))["probabilities"].numpy()

        print(f"model: {model_dir}")
    for path in args.files:
        signal = (data.read_csv_signal(path, channels) if path.endswith(".csv")
                  else data.read_mat_signal(path, channels))
        try:
            probabilities = classify(signal)
        except server_errors as e:
            print(f"error: server {args.server}, model {args.model_name}: {e}", file=sys.stderr)
            return 2
        votes = np.bincount(probabilities.argmax(axis=1), minlength=probabilities.shape[1])
        mean = probabilities.mean(axis=0)
        best = int(votes.argmax())
        print(f"{path}: {names.get(best, f'class {best}')}  ({votes[best]}/{len(probabilities)} "
              f"windows, mean probability {mean[best]:.3f})")
        if args.verbose:
            for i in np.argsort(-mean)[:3]:
                print(f"    {names.get(int(i), f'class {i}'):<8} {mean[i]:.3f}")
    return 0


def cmd_generate(args) -> int:
    """Writes generated CWRU-like recordings and a manifest (for trying the app out)."""
    from apps.sensor_vibration import data

    out = data.generate_synthetic(args.out, fmt=args.format, n_samples=args.samples,
                                  seed=args.seed)
    print(f"wrote recordings and manifest.csv to {out}")
    return 0


def cmd_compile(args) -> int:
    """Compiles the same pipeline into a Kubeflow Pipelines / Vertex AI spec."""
    from suite.quiet import quiet

    quiet()
    from apps.sensor_vibration.pipeline import APP as SPEC
    from pipelines.builder import create_pipeline
    from pipelines.runners import compile_kubeflow_v2

    config = _config(args)
    root = args.pipeline_root.rstrip("/")
    paths = _paths(root, args.examples or os.path.join(root, APP, "examples"), args.serving_dir)
    pipeline = create_pipeline(SPEC, config, paths, with_metadata=False)
    compile_kubeflow_v2(pipeline, args.image, args.out)
    print(f"wrote {args.target} pipeline spec to {args.out} (image {args.image})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line of the app."""
    parser = argparse.ArgumentParser(
        prog="sensor-vibration", description=DESCRIPTION, epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train, evaluate and deploy a model from recordings",
                         description=cmd_run.__doc__)
    run.add_argument("--data", metavar="DIR",
                     help="folder with recordings and manifest.csv (default: generate demo data)")
    _add_config_args(run)
    add_run_arguments(run, APP)
    run.set_defaults(func=cmd_run)

    predict = sub.add_parser("predict", help="classify recordings with a deployed model",
                             description=cmd_predict.__doc__)
    predict.add_argument("--model", metavar="DIR",
                         help="pushed model: a version folder or the model base path (newest)")
    predict.add_argument("--server", metavar="HOST:PORT",
                         help="ask a model server over gRPC instead (suite serve, TF Serving)")
    predict.add_argument("--model-name", default=APP,
                         help="served model name, with --server (default: %(default)s)")
    predict.add_argument("--channels", default="DE",
                         help="channels to read, comma separated, with --server (default: DE)")
    predict.add_argument("files", nargs="+", metavar="FILE", help=".mat or .csv recordings")
    predict.add_argument("-v", "--verbose", action="store_true", help="show the top 3 classes")
    predict.set_defaults(func=cmd_predict)

    generate = sub.add_parser("generate", help="write generated CWRU-like demo recordings",
                              description=cmd_generate.__doc__)
    generate.add_argument("--out", required=True, metavar="DIR")
    generate.add_argument("--format", default="mat", choices=["mat", "csv"])
    generate.add_argument("--samples", type=int, default=48000, help="samples per recording")
    generate.add_argument("--seed", type=int, default=0)
    generate.set_defaults(func=cmd_generate)

    comp = sub.add_parser("compile", help="write a Kubeflow Pipelines / Vertex AI spec",
                          description=cmd_compile.__doc__)
    comp.add_argument("--target", default="kubeflow-v2", choices=["kubeflow-v2"])
    comp.add_argument("--image", required=True,
                      help="container image with the suite installed (see Dockerfile)")
    comp.add_argument("--out", required=True, metavar="FILE", help="pipeline spec JSON to write")
    comp.add_argument("--pipeline-root", default="gs://BUCKET/suite", metavar="ROOT",
                      help="where the cluster's runs write (the same layout as --workspace)")
    comp.add_argument("--examples", metavar="URI",
                      help="ingested examples (train/ and eval/ folders); "
                           "default ROOT/sensor_vibration/examples")
    comp.add_argument("--serving-dir", metavar="URI",
                      help="model repository root (default: ROOT/serving): pushes go to "
                           "URI/models/sensor_vibration/<version>")
    _add_config_args(comp)
    comp.set_defaults(func=cmd_compile)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sensor-vibration``."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        # Bad input: the message names the file or field and what was expected.
        if os.environ.get("SUITE_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2

if __name__ == "__main__":
    sys.exit(main())
