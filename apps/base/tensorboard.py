"""``suite tensorboard``: TensorBoard over every training run of a workspace.

Each app's Trainer writes TensorBoard logs (per-epoch loss and metrics, the validation
figures the run keeps its best epoch by, and the model graph) into its ModelRun artifact:
``<workspace>/<app>/pipeline_root/Trainer/model_run/<execution>/logs``. This command finds
them all and starts TensorBoard with one run per app and execution (``<app>/<execution>``).
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys

LOGS = os.path.join("*", "pipeline_root", "Trainer", "model_run", "*", "logs")


def log_dirs(workspace: str) -> dict[str, str]:
    """Run name (``<app>/<execution>``) -> log folder, for every Trainer run with logs."""
    runs = {}
    for path in sorted(glob.glob(os.path.join(workspace, LOGS))):
        parts = os.path.relpath(path, workspace).split(os.sep)
        runs[f"{parts[0]}/{parts[4]}"] = path
    return runs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workspace", default="workspace", metavar="DIR",
                        help="the workspace the apps' runs wrote (default: workspace)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6006)


def run(args: argparse.Namespace) -> int:
    """Starts TensorBoard on the workspace's runs and waits for it (Ctrl-C stops it)."""
    runs = log_dirs(args.workspace)
    if not runs:
        print(f"error: no TensorBoard logs under {args.workspace} (expected "
              f"{os.path.join(args.workspace, LOGS)}): run an app first, e.g. "
              "`sensor-vibration run`", file=sys.stderr)
        return 2
    binary = shutil.which("tensorboard", path=os.path.dirname(sys.executable)) or "tensorboard"
    spec = ",".join(f"{name}:{path}" for name, path in runs.items())
    print(f"TensorBoard on {len(runs)} run(s): http://{args.host}:{args.port}/", flush=True)
    process = subprocess.Popen([binary, "--logdir_spec", spec, "--host", args.host,
                                "--port", str(args.port)])
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        return process.wait()
