"""Wall time of the pipeline's data steps on each Beam engine, side by side.

Ingests one app's data once (clickstreams on the Online Retail log by default: 541,909 order
lines, the most records of the real data sets the apps read), then runs the data steps of
the shared pipeline (``create_pipeline(..., data_only=True)``: ImportExampleGen ->
StatisticsGen -> SchemaGen -> ExampleValidator -> Transform) once per engine, each in a
fresh interpreter with its own pipeline root and metadata store and no cache:

- ``local``: Beam in process (the default runner);
- ``beam``: Beam's direct runner with --workers multi-processing workers;
- ``dask``: ``pipelines.dask_engine`` on a local dask.distributed cluster of --workers worker
  processes (one thread each), started before the pipeline (its start is timed apart).

Prints each component's wall time (its execution's span in ML Metadata) per engine, which
engine ran each Beam-based component (the Dask engine runs a pipeline in process where it
cannot run it, and says why), the load average around each run, and the example counts.

    .venv/bin/python benchmarks/beam_engines.py [--engines local,beam,dask] [--workers 2]
        [--app clickstreams --data FILE --format FORMAT --preset default] [--out FILE]
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import re
import subprocess
import sys
import time

import suite  # noqa: F401  (Keras policy before TensorFlow)
import common

from apps.base import cli
from suite.progress import say

DATA = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                    "shared", "datasets"))
DEFAULT_WORKSPACE = os.path.join("workspace", "benchmarks", "beam_engines")
# Without --data: the app's real data set and the format it is in.
DEFAULTS = {"clickstreams": (os.path.join(DATA, "clickstream", "online_retail",
                                          "online_retail.csv"), "orders")}
ENGINES = ("local", "beam", "dask")
BEAM_STEPS = ("ImportExampleGen", "StatisticsGen", "Transform")
_RUNNING = re.compile(r"^Component (\S+) is running\.$")


def _app(name: str):
    return importlib.import_module(f"apps.{name}.app").APP


def parse(argv: list[str] | None) -> argparse.Namespace:
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--app", default="clickstreams")
    known, _ = first.parse_known_args(argv)
    app = _app(known.app)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--app", default="clickstreams", help="the app whose data steps run")
    parser.add_argument("--data", metavar="PATH", help="the app's raw data (default: the "
                                                       "Online Retail log for clickstreams)")
    cli.add_config_arguments(parser, app)
    parser.set_defaults(preset="default")
    parser.add_argument("--engines", default=",".join(ENGINES),
                        help=f"comma-separated, of {', '.join(ENGINES)}")
    parser.add_argument("--workers", type=int, default=2,
                        help="beam: worker processes; dask: worker processes of the local "
                             "cluster (default: 2)")
    common.add_output_arguments(parser, DEFAULT_WORKSPACE)
    parser.add_argument("--child", metavar="ENGINE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.data is None and args.app in DEFAULTS:
        args.data, fmt = DEFAULTS[args.app]
        args.format = getattr(args, "format", None) or fmt
    args.app_object = app
    return args


def ingest(args):
    """The app's ingestion (a finished examples folder is reused) and the completed config."""
    app = args.app_object
    config = cli.config_from_args(app, args)
    path = args.data or app.demo_data(os.path.join(args.workspace, "generated"), config, say)
    ingested = app.ingest(path, config, os.path.join(args.workspace, "examples"), say)
    return path, app.with_ingested(config, ingested), ingested


class _ComponentStarts(logging.Filter):
    """Records when each TFX component starts (from LocalDagRunner's log lines)."""

    def __init__(self):
        super().__init__()
        self.starts: list[tuple[float, str]] = []

    def filter(self, record: logging.LogRecord) -> bool:
        match = _RUNNING.match(record.getMessage())
        if match:
            self.starts.append((record.created, match.group(1)))
        return True


def run_engine(args) -> dict:
    """One engine's run of the data steps (in this interpreter): per-component seconds and
    which engine ran each Beam-based component."""
    from suite.quiet import quiet

    quiet()
    from absl import logging as absl_logging

    starts = _ComponentStarts()
    # First: the quiet filter drops the progress records it prints.
    absl_logging.get_absl_handler().filters.insert(0, starts)
    engine = args.child
    _, config, ingested = ingest(args)

    from pipelines.builder import create_pipeline
    from pipelines.results import component_wall_times
    from pipelines.runners import beam_args, run_local

    app = args.app_object
    spec = app.spec(config)
    paths = cli.pipeline_paths(os.path.join(args.workspace, engine), app.name,
                               ingested.examples_dir)
    os.makedirs(os.path.dirname(paths.metadata_path), exist_ok=True)
    result = {"engine": engine, "load_before": os.getloadavg()}
    runs = []
    if engine == "dask":  # imported for this engine only: it adds --dask_* Beam options
        from pipelines import dask_engine

        runs = dask_engine.RUNS
        start = time.perf_counter()  # the cluster --runner dask starts, started here to time it
        client = dask_engine.client_for(None, args.workers)
        result["cluster_start_s"] = time.perf_counter() - start
        result["cluster"] = client.scheduler.address
    beam = beam_args(engine, args.workers)
    pipeline = create_pipeline(spec, config, paths, beam_pipeline_args=beam,
                               enable_cache=False, data_only=True)
    start = time.perf_counter()
    run_local(pipeline)
    result["pipeline_s"] = time.perf_counter() - start
    result["load_after"] = os.getloadavg()
    result["components"] = component_wall_times(paths.metadata_path, spec.name)
    result["ran_on"] = ran_on(engine, args.workers, starts.starts, runs)
    result["counts"] = ingested.counts
    if engine == "dask":
        dask_engine.shutdown()
    return result


def ran_on(engine: str, workers: int, starts, runs) -> dict[str, str]:
    """Component -> the engine that ran its Beam pipeline(s)."""
    if engine == "local":
        return {step: "in process" for step in BEAM_STEPS}
    if engine == "beam":
        return {step: f"{workers} processes" for step in BEAM_STEPS}
    out: dict[str, list[str]] = {}
    for run in runs:
        component = next((name for t, name in reversed(starts) if t <= run.start), "?")
        text = (f"dask ({run.workers} workers, {run.tasks} tasks)" if run.engine == "dask"
                else f"in process ({run.reason})")
        out.setdefault(component, []).append(text)
    return {name: "; ".join(texts) for name, texts in out.items()}


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.child:
        result = run_engine(args)
        with open(args.out, "w") as f:
            json.dump(result, f, default=str)
        sys.stdout.flush()
        sys.stderr.flush()
        # Skips the interpreter's teardown, where TensorFlow's function finalizers print
        # ignored TypeErrors after a dask run: noise between the runs' progress lines.
        os._exit(0)
    wall = time.perf_counter()
    os.makedirs(args.workspace, exist_ok=True)
    from suite.quiet import quiet

    quiet()
    path, _, ingested = ingest(args)
    say(f"examples: {ingested.counts} in {ingested.examples_dir}")
    results = {}
    forwarded = list(argv if argv is not None else sys.argv[1:])
    for engine in args.engines.split(","):
        out = os.path.join(args.workspace, f"{engine}.json")
        say(f"running the data steps on {engine}")
        command = [sys.executable, os.path.abspath(__file__), *forwarded,
                   "--child", engine, "--out", out, "--workspace", args.workspace]
        code = subprocess.call(command)
        if code != 0:
            say(f"{engine}: exit status {code}")
            continue
        with open(out) as f:
            results[engine] = json.load(f)
    print_results(path, ingested, results, args.workers)
    common.finish({"data": path, "counts": ingested.counts, "workers": args.workers,
                   "cpus": os.cpu_count(), "engines": results},
                  time.perf_counter() - wall, args.out)
    return 0


def print_results(path: str, ingested, results: dict, workers: int) -> None:
    engines = list(results)
    print(f"\ndata: {path}; examples {ingested.counts}; {os.cpu_count()} CPU cores; "
          f"beam and dask with {workers} worker processes")
    names = list(dict.fromkeys(n for r in results.values() for n in r["components"]))
    rows = [[name, *[common.fmt(results[e]["components"].get(name), 1) for e in engines]]
            for name in names]
    rows.append(["data steps (sum)",
                 *[common.fmt(sum(results[e]["components"].values()), 1) for e in engines]])
    rows.append(["pipeline wall time",
                 *[common.fmt(results[e]["pipeline_s"], 1) for e in engines]])
    if "dask" in results:
        rows.append(["dask cluster start (before the pipeline)",
                     *[common.fmt(results[e].get("cluster_start_s"), 1) for e in engines]])
    rows.append(["load average before / after",
                 *[f"{results[e]['load_before'][0]:.1f} / {results[e]['load_after'][0]:.1f}"
                   for e in engines]])
    common.print_table(["seconds", *engines], rows)
    print("\nwhich engine ran each Beam-based component (SchemaGen and ExampleValidator run "
          "no Beam pipeline):")
    for engine in engines:
        for name, how in results[engine]["ran_on"].items():
            print(f"  {engine:<6} {name:<18} {how}")


if __name__ == "__main__":
    sys.exit(main())
