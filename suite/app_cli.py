"""Pieces every app's command line shares: config overrides, workspace paths, progress
lines, the Kubeflow V2 compile and the error convention (exit status 2 with the message).

Only the standard library is imported at module level, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping
from typing import Any


def say(message: str) -> None:
    """Prints a time-stamped progress line."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    """``--set FIELD=JSON`` (repeatable): override any config field."""
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                        help="override any config field, e.g. --set train.epochs=5 "
                             "(values are JSON; plain words are strings)")


def apply_overrides(config: Any, overrides: Mapping[str, Any], sets: list[str] = ()) -> Any:
    """The config with ``overrides`` (dotted field -> value; None = keep) and then the
    ``FIELD=JSON`` strings of ``--set`` applied; lists become tuples."""
    from suite.config import replace_path  # noqa: PLC0415

    values = dict(overrides)
    for item in sets:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE")
        try:
            values[name] = json.loads(value)
        except json.JSONDecodeError:
            values[name] = value
    for name, value in values.items():
        if value is not None:
            config = replace_path(config, name, tuple(value) if isinstance(value, list) else value)
    return config


def pipeline_paths(workspace: str, app: str, examples_dir: str, serving_dir: str | None = None):
    """Where an app's run writes under a workspace; paths or URIs (gs://...) alike."""
    from pipelines.builder import PipelinePaths  # noqa: PLC0415

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
    parser.add_argument("--runner", default="local", choices=["local", "beam"],
                        help="local: one process (default); beam: Beam multi-processing "
                             "workers for large data")
    parser.add_argument("--no-cache", action="store_true",
                        help="re-run every step even when inputs and code are unchanged")


def add_compile_arguments(parser: argparse.ArgumentParser, app: str) -> None:
    """The arguments of an app's ``compile`` command."""
    parser.add_argument("--target", default="kubeflow-v2", choices=["kubeflow-v2"])
    parser.add_argument("--image", required=True,
                        help="container image with the suite installed (see Dockerfile)")
    parser.add_argument("--out", required=True, metavar="FILE", help="pipeline spec JSON to write")
    parser.add_argument("--pipeline-root", default="gs://BUCKET/suite", metavar="ROOT",
                        help="where the cluster's runs write (the same layout as --workspace)")
    parser.add_argument("--examples", metavar="URI",
                        help=f"ingested examples (train/ and eval/ folders); "
                             f"default ROOT/{app}/examples")
    parser.add_argument("--serving-dir", metavar="URI",
                        help=f"model repository root (default: ROOT/serving): pushes go to "
                             f"URI/models/{app}/<version>")


def compile_pipeline(spec, config: Any, args: argparse.Namespace, app: str) -> int:
    """Compiles the app's pipeline for ``config`` into a Kubeflow Pipelines / Vertex AI spec."""
    from pipelines.builder import create_pipeline  # noqa: PLC0415
    from pipelines.runners import compile_kubeflow_v2  # noqa: PLC0415

    root = args.pipeline_root.rstrip("/")
    paths = pipeline_paths(root, app, args.examples or os.path.join(root, app, "examples"),
                           args.serving_dir)
    pipeline = create_pipeline(spec, config, paths, with_metadata=False)
    compile_kubeflow_v2(pipeline, args.image, args.out)
    print(f"wrote {args.target} pipeline spec to {args.out} (image {args.image})")
    return 0


def run_command(args: argparse.Namespace) -> int:
    """Runs ``args.func``; bad input (ValueError, FileNotFoundError) becomes exit status 2
    with the message, which names the file or field (SUITE_DEBUG=1 shows the traceback)."""
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        if os.environ.get("SUITE_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
