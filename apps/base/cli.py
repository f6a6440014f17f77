"""The command line every app shares: ``run``, ``generate``, ``compile``, ``main``, the run
summary's frame, the ``--model DIR`` / ``--server HOST:PORT`` plumbing of prediction
commands, and the error convention (exit status 2 with a message naming the file, field or
argument; ``SUITE_DEBUG=1`` shows the traceback).

An app's ``cli.py`` passes its declaration, help text and app-only commands to ``main``.
Only the standard library and the app's light declaration are imported at module level, so
``--help`` answers at once; TensorFlow and TFX load when a command needs them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import json
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from typing import Any

from apps.base.app import App
from suite.progress import say

EXIT_BAD_INPUT = 2
EXIT_NOT_BLESSED = 3
EXIT_CANNOT_WRITE = 4


class ArgumentError(ValueError):
    """A command-line argument out of its range; the message names it."""


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


# -- configuration -------------------------------------------------------------------------


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    """``--set FIELD=JSON`` (repeatable): override any config field."""
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                        help="override any config field, e.g. --set train.epochs=5 "
                             "(values are JSON; plain words are strings)")


def apply_overrides(config: Any, overrides: Mapping[str, Any], sets: list[str] = ()) -> Any:
    """The config with ``overrides`` (dotted field -> value; None = keep) and then the
    ``FIELD=JSON`` strings of ``--set`` applied, each checked against its field's type."""
    from suite.config import replace_path

    values = dict(overrides)
    for item in sets:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE, e.g. train.epochs=5")
        try:
            values[name] = json.loads(value)
        except json.JSONDecodeError:
            values[name] = value
    for name, value in values.items():
        if value is not None:
            config = replace_path(config, name, value)
    return config


def _has_field(cls: type, dotted: str) -> bool:
    head, _, rest = dotted.partition(".")
    fields = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) \
        else {}
    if head not in fields:
        return False
    if not rest:
        return True
    import typing

    return _has_field(typing.get_type_hints(cls)[head], rest)


def add_config_arguments(parser: argparse.ArgumentParser, app: App) -> None:
    """The configuration arguments of ``run`` and ``compile``."""
    presets = sorted(app.config_class.PRESETS)
    parser.add_argument("--preset", default="tiny", choices=presets,
                        help="size of data, model and training (tiny: a minute on a laptop; "
                             "default: the benchmark setting)")
    if app.formats:
        parser.add_argument("--format", choices=app.formats,
                            help=f"input format (default: {app.formats[0]})")
    if app.models:
        parser.add_argument("--model", choices=app.models,
                            help="model family (default: the preset's)")
    if app.modes:
        parser.add_argument("--mode", choices=app.modes, help=f"default: {app.modes[0]}")
    parser.add_argument("--epochs", type=positive_int, help="training epochs (overrides the "
                                                             "preset)")
    if _has_field(app.config_class, "data.skip_bad_files"):
        parser.add_argument("--skip-bad-files", action="store_true",
                            help="skip unreadable input files (each reported and counted) "
                                 "instead of stopping")
    app.add_config_arguments(parser)
    add_set_argument(parser)


def config_from_args(app: App, args: argparse.Namespace) -> Any:
    """The preset with the command line's overrides applied, checked."""
    config = app.config_class.preset(args.preset)
    if getattr(args, "model", None):
        config = app.with_model(config, args.model)
    overrides = {
        "data.format": getattr(args, "format", None),
        "mode": getattr(args, "mode", None),
        "train.epochs": args.epochs,
        "data.skip_bad_files": True if getattr(args, "skip_bad_files", False) else None,
        **app.overrides(args),
    }
    return apply_overrides(config, overrides, args.set).check()


# -- run -------------------------------------------------------------------------------------


def pipeline_paths(workspace: str, app: str, examples_dir: str, serving_dir: str | None = None):
    """Where an app's run writes under a workspace; paths or URIs (gs://...) alike."""
    from pipelines.builder import PipelinePaths

    app_ws = os.path.join(workspace, app)
    serving = serving_dir or os.path.join(workspace, "serving")
    return PipelinePaths(
        examples_dir=examples_dir,
        pipeline_root=os.path.join(app_ws, "pipeline_root"),
        metadata_path=os.path.join(app_ws, "metadata.sqlite"),
        serving_base=os.path.join(serving, "models"),
        edge_base=os.path.join(serving, "edge"),
    )


def add_run_arguments(parser: argparse.ArgumentParser, model_name: str) -> None:
    """Where a ``run`` command writes and how it runs: --workspace, --serving-dir, --runner,
    --no-cache."""
    parser.add_argument("--workspace", default="workspace", metavar="DIR",
                        help="where examples, pipeline outputs and the metadata store go "
                             "(default: ./workspace)")
    parser.add_argument("--serving-dir", metavar="DIR",
                        help=f"model repository root (default: WORKSPACE/serving); models go "
                             f"to DIR/models/{model_name}/<version>, TFLite to DIR/edge/...")
    add_engine_arguments(parser)
    parser.add_argument("--no-cache", action="store_true",
                        help="re-run every step even when inputs and code are unchanged")


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """--runner and the Beam engine's options (run, compile, submit)."""
    from pipelines.runners import RUNNERS  # noqa: PLC0415 (argparse and os only)

    parser.add_argument("--runner", default="local", choices=RUNNERS,
                        help="the Beam engine of the data steps: local (one process, the "
                             "default), beam (multi-processing workers), dask (a "
                             "dask.distributed cluster), dataflow, flink or spark (a portable "
                             "job server)")
    group = parser.add_argument_group("Beam engine options")
    group.add_argument("--beam-workers", type=int, default=0, metavar="N",
                       help="beam: worker processes; dask: processes of the local cluster "
                            "(default: one per CPU)")
    group.add_argument("--beam-dask-address", default="", metavar="HOST:PORT",
                       help="dask: a running scheduler (default: a local cluster the run "
                            "starts and stops)")
    group.add_argument("--beam-project", default="", help="dataflow: Google Cloud project")
    group.add_argument("--beam-region", default="", help="dataflow: region")
    group.add_argument("--beam-temp-location", default="", metavar="GS_URI",
                       help="dataflow: staging and temp files")
    group.add_argument("--beam-worker-image", default="", metavar="IMAGE",
                       help="dataflow: SDK container image; flink/spark: the DOCKER image")
    group.add_argument("--beam-job-endpoint", default="", metavar="HOST:PORT",
                       help="flink/spark: the portable job server")
    group.add_argument("--beam-environment-type", default="DOCKER",
                       choices=["DOCKER", "PROCESS", "EXTERNAL", "LOOPBACK"],
                       help="flink/spark: how workers run the Python SDK")
    group.add_argument("--beam-arg", action="append", default=[], metavar="--OPTION=VALUE",
                       help="any other Beam pipeline option, passed through (repeatable)")


def engine_args(args: argparse.Namespace) -> list[str]:
    """The Beam pipeline options of --runner and the --beam-* options."""
    from pipelines.runners import EngineOptions, beam_args

    return beam_args(args.runner, args.beam_workers, options=EngineOptions(
        project=args.beam_project, region=args.beam_region,
        temp_location=args.beam_temp_location, worker_image=args.beam_worker_image,
        job_endpoint=args.beam_job_endpoint, environment_type=args.beam_environment_type,
        dask_address=args.beam_dask_address, extra=tuple(args.beam_arg)))


def cmd_run(app: App, args: argparse.Namespace) -> int:
    """Ingests and validates the data, runs the whole pipeline, and prints the evaluation
    and where the served and edge models are."""
    from suite.quiet import quiet

    quiet()
    config = config_from_args(app, args)
    engine_args(args)  # a missing engine option stops the run before anything is read
    from suite import files

    if not files.is_local(args.workspace):  # os.path would make a local folder "gs:" of it
        raise ValueError(
            f"--workspace {args.workspace}: expected a local folder (it holds the ML Metadata "
            f"store, a SQLite file, and the ingested examples); to run on Cloud Storage, "
            f"compile or submit the pipeline with --pipeline-root and --examples gs://...")
    workspace = os.path.abspath(args.workspace)
    app_ws = os.path.join(workspace, app.name)
    from suite.locks import exclusive

    with exclusive(app_ws, say):
        return _run(app, args, config, workspace, app_ws)


def _run(app: App, args: argparse.Namespace, config: Any, workspace: str, app_ws: str) -> int:
    """``cmd_run`` once the app's workspace folder is this run's alone."""
    from suite.config import to_dict

    path = args.data
    if path is None:
        path = app.demo_data(os.path.join(app_ws, "generated"), config, say)
    say(f"reading {path}")
    ingested = app.ingest(path, config, os.path.join(app_ws, "examples"), say)
    say(f"examples: {ingested.counts} -> {ingested.examples_dir}")
    if ingested.skipped:
        say(f"skipped {len(ingested.skipped)} bad file(s) (listed in "
            f"{os.path.join(ingested.examples_dir, 'summary.json')})")
    for line in app.ingested_lines(ingested):
        print(line)
    config = app.with_ingested(config, ingested)

    paths = pipeline_paths(workspace, app.name, ingested.examples_dir, args.serving_dir)
    os.makedirs(os.path.dirname(paths.metadata_path), exist_ok=True)
    config_path = os.path.join(app_ws, "config.json")
    with open(config_path, "w") as f:
        json.dump({"app": app.name, "preset": args.preset, "data": os.path.abspath(path),
                   "runner": args.runner, "config": to_dict(config),
                   "paths": dataclasses.asdict(paths)}, f, indent=2)
    say(f"effective config written to {config_path}")

    from pipelines.builder import create_pipeline
    from pipelines.results import latest_run
    from pipelines.runners import run_local

    spec = app.spec(config)
    say(f"running the pipeline ({app.pipeline_steps})")
    pipeline = create_pipeline(spec, config, paths, beam_pipeline_args=engine_args(args),
                               enable_cache=not args.no_cache)
    run_local(pipeline)
    summary = latest_run(paths.metadata_path, spec.name)
    print_summary(app, summary, config, ingested)
    return 0 if summary.blessed else EXIT_NOT_BLESSED


def print_summary(app: App, summary, config: Any, ingested) -> None:
    """The run summary: what came from the cache, the app's evaluation lines, the blessing,
    and where the served and edge models are."""
    from components.evaluation_results import evaluation_metrics

    print()
    cached = sorted(n for n, s in summary.states.items() if s == "CACHED")
    if cached:
        print(f"reused from cache: {', '.join(cached)}")
    if ingested.skipped:
        print(f"skipped files: {len(ingested.skipped)}")
    if summary.evaluation_uri:
        for line in app.metric_lines(evaluation_metrics(summary.evaluation_uri), config,
                                     ingested):
            print(line)
    if summary.model_uri:
        from serving.export import load_metadata
        from suite.energy import METADATA_KEY, summary_line
        from tfx.utils import path_utils

        used = load_metadata(path_utils.serving_model_path(summary.model_uri)).get(
            METADATA_KEY)
        if used:
            print(f"training energy: {summary_line(used)}")
    print(f"blessed: {'yes' if summary.blessed else 'NO (thresholds not met; nothing pushed)'}")
    if summary.pushed:
        print(f"TF Serving model: {summary.pushed_destination}")
        for line in app.pushed_lines(summary.pushed_destination):
            print(line)
    if summary.edge_dir:
        print(f"TFLite models:    {summary.edge_dir}")
        with open(os.path.join(summary.edge_dir, "report.json")) as f:
            for line in edge_lines(json.load(f)):
                print(line)
    if summary.pushed_report:
        card = os.path.join(os.path.dirname(summary.pushed_report), "model_card.md")
        print(f"model card:       {card}")
    if summary.report_path:
        print(f"run report:       {summary.report_path}")


def edge_lines(report: dict) -> list[str]:
    """The TFLite report as a table (size, latency, quality, agreement and the gate's verdict
    per variant), then the variant to ship."""
    k = report.get("k")
    metric, label = ("recall_at_k", f"recall@{k}") if k else ("accuracy", "accuracy")
    agreement = f"top-{k} agreement" if k else "agreement"
    reference = report.get("reference", {}).get(metric)
    lines = [f"  on {report['n_examples']} held-out examples"
             + (f"; the reference model's {label}: {reference:.4f}" if reference is not None
                else "")]

    def figures(r: dict) -> str:
        quality = r.get(metric)
        return (f"{r['size_bytes'] / 1024:.1f} KiB, {r['latency_ms_p50']:.3f} ms p50"
                + (f", {label} {quality:.4f}" if quality is not None else ""))

    for variant, r in report["variants"].items():
        verdict = "accepted" if r["accepted"] else f"REJECTED, not published: {r['rejected']}"
        lines.append(f"  {variant:<15} {r['size_bytes'] / 1024:8.1f} KiB "
                     f"({r['size_gzip_bytes'] / 1024:.1f} gzipped)  "
                     f"{r['latency_ms_p50']:7.3f} ms p50 {r['latency_ms_p99']:7.3f} ms p99"
                     + (f"  sparsity {r['sparsity']:.2f}" if "sparsity" in r else "")
                     + (f"  {label} {r[metric]:.4f}" if r.get(metric) is not None else "")
                     + f"  {agreement} {r['agreement']:.4f}  {verdict}")
    for variant, reason in report.get("skipped", {}).items():
        lines.append(f"  {variant:<14} skipped: {reason[:200]}")
    if report.get("student"):
        from serving.distill import describe

        lines.append(f"  student: {describe(report['student'])}")
    for note in report.get("notes", []):
        lines.append(f"  note: {note}")
    front_end = report.get("front_end")
    if front_end:
        lines.append(f"  the files take {front_end['output_shape']} values the device computes "
                     f"from {front_end['model_input']}: {front_end['computes']}")
    mcu = report.get("mcu")
    if mcu:
        if mcu["runs"]:
            arena = mcu["arena_bytes"]
            verdict = (f"runs; tensor arena {'?' if arena is None else f'{arena / 1024:.1f}'} "
                       f"KiB, agreement with the TFLite interpreter {mcu['agreement']:.4f} on "
                       f"{mcu['n_examples']} examples")
        elif mcu["runs"] is False:
            verdict = f"does not run: {mcu['reason'][:200]}"
        else:  # not checked (no int8 file, or too large)
            verdict = mcu["reason"]
        lines.append(f"  microcontroller (TFLite Micro, {mcu['variant']}): {verdict}")
    ship = report.get("ship")
    lines.append(f"  ship: {ship} ({figures(report['variants'][ship])})" if ship
                 else "  ship: none (no variant passed the gate)")
    for name, file in report.get("vocabularies", {}).items():
        lines.append(f"  vocabulary {name}: {file} (line j = output j = input id j + 1)")
    return lines


def cmd_distill(app: App, args: argparse.Namespace) -> int:
    """Trains the app's small student model from the model the workspace's last run pushed
    (its outputs on the training examples, plus the labels), converts it to float32 and int8
    TFLite files, gates them against the served model on the same held-out examples as the
    other variants, and writes that version's edge folder again with them. The same as a run
    with --set edge.distill=true, for a model already pushed; --set edge.distill_... changes
    how the student is trained."""
    from suite.quiet import quiet

    quiet()
    app_ws = os.path.join(os.path.abspath(args.workspace), app.name)
    config_path = os.path.join(app_ws, "config.json")
    if not os.path.exists(config_path):
        raise ArgumentError(f"--workspace {args.workspace}: no {app.command} run there "
                            f"({config_path} is missing); run `{app.command} run` first")
    from suite.config import from_dict
    from suite.locks import exclusive

    with open(config_path) as f:
        saved = json.load(f)
    config = from_dict(app.config_class, saved["config"], "config")
    config = apply_overrides(config, {"edge.distill": True}, args.set).check()
    with exclusive(app_ws, say):
        return _distill(app, config, saved["paths"])


def _distill(app: App, config: Any, paths: dict) -> int:
    """``cmd_distill`` once the app's workspace folder is this command's alone."""
    from components.tflite_export import export_from_examples
    from pipelines.results import latest_run

    spec = app.spec(config)
    summary = latest_run(paths["metadata_path"], spec.name)
    if not (summary.pushed and summary.examples_uri and summary.transform_graph_uri):
        raise ArgumentError(f"{paths['metadata_path']}: the last run of {spec.name} pushed no "
                            "model; run until a model is blessed and pushed")
    # Where the pipeline's TFLite step writes (also when that step failed).
    edge_dir = os.path.join(paths["edge_base"], spec.model_name(config),
                            summary.pushed_version)
    if not spec.tflite.student:
        raise ArgumentError(f"{app.command}: this app (or mode) declares no student model")
    say(f"distilling {summary.pushed_destination} into {spec.tflite.student}")
    report = export_from_examples(
        summary.pushed_destination, edge_dir, summary.examples_uri,
        summary.transform_graph_uri, edge=config.edge, label_key=spec.label_key,
        model_input_key=spec.model_input_key, **spec.tflite.export_arguments())
    print(f"TFLite models:    {edge_dir}")
    for line in edge_lines(report):
        print(line)
    return 0


# -- generate and compile --------------------------------------------------------------------


def cmd_generate(app: App, args: argparse.Namespace) -> int:
    """Writes generated demo data in a supported format, for trying the app out."""
    print(f"wrote generated data to {app.generate(args)}")
    return 0


def add_compile_arguments(parser: argparse.ArgumentParser, app: App) -> None:
    """The arguments of an app's ``compile`` command."""
    parser.add_argument("--target", default="kubeflow-v2", choices=["kubeflow-v2"])
    parser.add_argument("--out", required=True, metavar="FILE", help="pipeline spec JSON to write")
    add_spec_arguments(parser, app)


def add_spec_arguments(parser: argparse.ArgumentParser, app: App) -> None:
    """What a compiled spec is made of (``compile`` and ``submit``)."""
    parser.add_argument("--image", required=True,
                        help="container image with the suite installed (see Dockerfile)")
    parser.add_argument("--pipeline-root", default="gs://BUCKET/suite", metavar="ROOT",
                        help="where the cluster's runs write (the same layout as --workspace)")
    parser.add_argument("--examples", metavar="URI",
                        help=f"ingested examples (one folder per split); default "
                             f"ROOT/{app.name}/examples")
    parser.add_argument("--serving-dir", metavar="URI",
                        help=f"model repository root (default: ROOT/serving): pushes go to "
                             f"URI/models/{app.name}/<version>")
    add_engine_arguments(parser)


def cmd_compile(app: App, args: argparse.Namespace) -> int:
    """Compiles the same pipeline into a Kubeflow Pipelines / Vertex AI spec; what ingestion
    measured comes from the examples' summary.json when it is readable here."""
    compile_spec(app, args, args.out)
    print(f"wrote {args.target} pipeline spec to {args.out} (image {args.image})")
    return 0


def compile_spec(app: App, args: argparse.Namespace, out: str) -> str:
    """Writes the app's Kubeflow V2 spec for ``args`` (config and spec arguments) to
    ``out``."""
    from suite.quiet import quiet

    quiet()
    from pipelines.builder import create_pipeline
    from pipelines.runners import compile_kubeflow_v2
    from suite import examples_io

    config = config_from_args(app, args)
    if args.examples and examples_io.is_complete(args.examples):
        config = app.with_ingested(config, examples_io.IngestResult.load(args.examples))
    root = args.pipeline_root.rstrip("/")
    paths = pipeline_paths(root, app.name,
                           args.examples or os.path.join(root, app.name, "examples"),
                           args.serving_dir)
    pipeline = create_pipeline(app.spec(config), config, paths, with_metadata=False,
                               beam_pipeline_args=engine_args(args))
    return compile_kubeflow_v2(pipeline, args.image, out)


def add_submit_arguments(parser: argparse.ArgumentParser, app: App) -> None:
    """The arguments of an app's ``submit`` command."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--project", help="Google Cloud project: submit to Vertex AI Pipelines")
    where.add_argument("--kfp-host", metavar="URL",
                       help="Kubeflow Pipelines API endpoint: submit there instead")
    parser.add_argument("--region", default="us-central1", help="Vertex AI region")
    parser.add_argument("--service-account", metavar="EMAIL",
                        help="Vertex AI: the service account the run acts as")
    parser.add_argument("--kfp-token", default="", metavar="TOKEN",
                        help="Kubeflow Pipelines: bearer token (default $KF_PIPELINES_TOKEN)")
    add_spec_arguments(parser, app)


def cmd_submit(app: App, args: argparse.Namespace) -> int:
    """Compiles the pipeline (as ``compile`` does) and submits it as a Vertex AI
    PipelineJob (--project) or a Kubeflow Pipelines run (--kfp-host); prints the run's
    URL."""
    import tempfile

    from pipelines.submit import SubmitError, submit_kfp, submit_vertex

    with tempfile.TemporaryDirectory() as folder:
        spec = compile_spec(app, args, os.path.join(folder, f"{app.command}.json"))
        try:
            if args.project:
                url = submit_vertex(spec, project=args.project, region=args.region,
                                    service_account=args.service_account)
            else:
                url = submit_kfp(spec, host=args.kfp_host, token=args.kfp_token)
        except SubmitError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_BAD_INPUT
    print(f"submitted {app.command}: {url}")
    return 0


# -- prediction commands ---------------------------------------------------------------------


def add_serving_arguments(parser: argparse.ArgumentParser, app: App,
                          required_model: bool = False) -> None:
    """--model DIR (load the pushed model here) or --server HOST:PORT (ask a model server),
    and --model-name."""
    parser.add_argument("--model", metavar="DIR", required=required_model,
                        help="pushed model: a version folder or the model base path (newest)")
    if not required_model:
        parser.add_argument("--server", metavar="HOST:PORT",
                            help="ask a model server over gRPC instead (suite serve, TF "
                                 "Serving)")
        parser.add_argument("--model-name", default=app.name,
                            help="served model name, with --server (default: %(default)s)")


def check_model_or_server(args: argparse.Namespace) -> None:
    """Exactly one of --model and --server."""
    if (args.model is None) == (getattr(args, "server", None) is None):
        raise ArgumentError(f"{args.command}: expected either --model DIR (load the model "
                            "here) or --server HOST:PORT (ask a model server)")


def read_each(files: list[str], read: Callable[[str], Any]) -> tuple[list[str], list[Any],
                                                                      list[tuple[str, str]]]:
    """``read`` on every file of a batch command: (the files read, what each gave, (file,
    reason) of those that raised ValueError), so one bad file does not stop the others."""
    good, items, bad = [], [], []
    for path in files:
        try:
            items.append(read(path))
            good.append(path)
        except ValueError as e:
            bad.append((path, str(e)))
    return good, items, bad


def report_unreadable(bad: list[tuple[str, str]]) -> int:
    """Lists the files a batch command could not read, each with its reason; the exit
    status: 0, or 2 when any could not be read."""
    for _, reason in bad:
        print(f"error: {reason}", file=sys.stderr)
    if bad:
        print(f"error: {len(bad)} file(s) could not be read (listed above); the others were "
              "answered", file=sys.stderr)
    return EXIT_BAD_INPUT if bad else 0


@contextlib.contextmanager
def server_errors(args: argparse.Namespace):
    """Turns a failed call to the model server into the error convention's message."""
    from serving.clients import ServingClientError

    try:
        yield
    except ServingClientError as e:
        raise ArgumentError(f"server {args.server}, model {args.model_name}: {e}") from None


# -- parser and main ---------------------------------------------------------------------------


def build_parser(app: App, description: str, examples: str,
                 commands: Callable[[Any], None] | None = None) -> argparse.ArgumentParser:
    """The app's command line: run, the app-only ``commands``, generate and compile."""
    parser = argparse.ArgumentParser(
        prog=app.command, description=description, epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train, evaluate and deploy a model from raw data",
                         description=cmd_run.__doc__)
    run.add_argument("--data", metavar=app.data_metavar, help=app.data_help)
    add_config_arguments(run, app)
    add_run_arguments(run, app.name)
    run.set_defaults(func=lambda args: cmd_run(app, args))

    distill = sub.add_parser("distill", help="train a small student of the pushed model "
                                             "for the edge", description=cmd_distill.__doc__)
    distill.add_argument("--workspace", default="workspace", metavar="DIR",
                         help="the workspace of an earlier run (default: ./workspace)")
    add_set_argument(distill)
    distill.set_defaults(func=lambda args: cmd_distill(app, args))

    if commands is not None:
        commands(sub)

    gen = sub.add_parser("generate", help="write generated demo data",
                         description=cmd_generate.__doc__)
    gen.add_argument("--out", required=True, metavar="PATH")
    if app.formats:
        gen.add_argument("--format", default=app.formats[0], choices=app.formats)
    gen.add_argument("--seed", type=int, default=0)
    app.add_generate_arguments(gen)
    gen.set_defaults(func=lambda args: cmd_generate(app, args))

    comp = sub.add_parser("compile", help="write a Kubeflow Pipelines / Vertex AI spec",
                          description=cmd_compile.__doc__)
    add_compile_arguments(comp, app)
    add_config_arguments(comp, app)
    comp.set_defaults(func=lambda args: cmd_compile(app, args))

    submit = sub.add_parser("submit", help="compile and submit to Vertex AI or Kubeflow "
                                           "Pipelines", description=cmd_submit.__doc__)
    add_submit_arguments(submit, app)
    add_config_arguments(submit, app)
    submit.set_defaults(func=lambda args: cmd_submit(app, args))
    return parser


def run_command(args: argparse.Namespace) -> int:
    """Runs ``args.func``; bad input (ValueError, FileNotFoundError) becomes exit status 2
    with the message, which names the file or field; a file system that refuses a write
    (full disk, file too large, no permission, read-only) exit status 4, naming the file.
    Writes are atomic (staged, then renamed), so what was there before stays intact.
    SUITE_DEBUG=1 shows the traceback."""
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        if os.environ.get("SUITE_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as e:  # a refused write surfaces as OSError or as TensorFlow's error
        refused = _refused_write(e)
        if refused is None or os.environ.get("SUITE_DEBUG"):
            raise
        print(f"error: cannot write: {refused}; free space, or choose a writable --workspace "
              "(what was written before is unchanged)", file=sys.stderr)
        return EXIT_CANNOT_WRITE


_WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
                 errno.EDQUOT}
_WRITE_MESSAGES = ("No space left on device", "File too large", "Read-only file system",
                   "Permission denied", "Disk quota exceeded")


def _refused_write(error: BaseException) -> str | None:
    """What the file system refused (the file and why), when ``error`` or one it came from
    is a refused write; None otherwise."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _WRITE_ERRNOS:
            return f"{error.filename or 'a file'}: {error.strerror}"
        if isinstance(error, shutil.Error) and error.args and error.args[0]:
            _, target, why = error.args[0][0]  # copytree's (source, target, reason) list
            if any(m in str(why) for m in _WRITE_MESSAGES):
                return f"{target}: {why}"
        text = str(error)
        if any(m in text for m in _WRITE_MESSAGES) and type(error).__name__.endswith("Error"):
            return text.strip().splitlines()[0][:500]
        error = error.__cause__ or error.__context__
    return None


def main(app: App, argv: list[str] | None, description: str, examples: str,
         commands: Callable[[Any], None] | None = None) -> int:
    """Entry point of an app's command."""
    return run_command(build_parser(app, description, examples, commands).parse_args(argv))
