"""Benchmark of the edge files: each app's TFLite report on its real benchmark data, as one
table per app.

With ``--run``, the named apps' ``run --preset default --set edge.prune_sparsity=0.7 --set
edge.distill=true`` first trains, pushes and converts on their real data in
../shared/datasets (the same command a user runs, plus the pruned int8 variant and the
distilled student's float32 and int8 variants); without it, the tables are read from the
workspace's latest pushed versions. Each table has the served
SavedModel and every TFLite variant: parameters of the converted model, file size and its
gzip-compressed size (what a firmware image or an over-the-air update carries),
single-example latency p50 / p99 (TFLite interpreter, this CPU), the app's metric on the
held-out examples, its drop against the SavedModel, and the gate's verdict; then the variant
to ship, the front end a device computes (if any) and the microcontroller check.

  .venv/bin/python benchmarks/edge.py --run all [--workspace W] [--out F]
  .venv/bin/python benchmarks/edge.py --run sensor_vibration,speech [--workspace W]
  .venv/bin/python benchmarks/edge.py --workspace W      # the runs already in W
"""

from __future__ import annotations

import argparse
import glob
import importlib
import json
import os
import sys
import time

import common  # noqa: E402  (benchmarks/common.py)

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                    "datasets")
# The run arguments of each app on its real benchmark data (the splits its own benchmark
# uses); every run also makes the pruned int8 variant and the student.
EDGE = ["--preset", "default", "--set", "edge.prune_sparsity=0.7", "--set", "edge.distill=true"]
SHORT = ["--set", "train.max_minutes=10", "--set", "edge.distill_epochs=15"]
RUNS = {
    "sensor_vibration": ["--data", os.path.join(DATA, "vibration", "cwru_12k_drive_end"),
                         *EDGE],
    "speech": ["--data", os.path.join(DATA, "speech", "fsdd", "recordings"),
               "--eval-indices", "5-9", *EDGE],
    # The image apps and the ranker train for less than their own benchmarks (time budget,
    # epochs; the defect model's accuracy floor and the ranker's lift over the best baseline
    # lowered to match, so that the shorter model is pushed and converted) so that the five
    # runs fit in about an hour on 2 cores: the table compares each variant with the model
    # it was made from.
    "medical_scans": ["--data", os.path.join(DATA, "medical", "chest_xray", "train"), *EDGE,
                      *SHORT],
    "defect_images": ["--data", os.path.join(DATA, "defects", "neu_surface_defects", "images"),
                      "--format", "prefix", "--set", "data.eval_indices=[201,240]",
                      "--set", "data.use_indices=[1,240]", "--set", "eval.min_accuracy=0.85",
                      *EDGE, *SHORT],
    "clickstreams": ["--data", os.path.join(DATA, "clickstream", "online_retail",
                                            "online_retail.csv"), "--format", "orders",
                     "--epochs", "2", "--set", "eval.min_lift=0.8", *EDGE,
                     "--set", "edge.distill_epochs=10"],
}


def _latest_report(workspace: str, model_name: str) -> tuple[str, dict] | None:
    versions = sorted(glob.glob(os.path.join(workspace, "serving", "edge", model_name, "*",
                                             "report.json")),
                      key=lambda p: int(os.path.basename(os.path.dirname(p))))
    if not versions:
        return None
    with open(versions[-1]) as f:
        return versions[-1], json.load(f)


def print_report(name: str, path: str, report: dict) -> None:
    print(f"\n{name}: {path} ({report['n_examples']} held-out examples)")
    saved = report.get("pushed_model")
    common.print_variants(report, common.folder_bytes(saved) if saved and os.path.isdir(saved)
                          else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="", metavar="APP,APP",
                        help=f"run these apps on their real data first (all, or some of "
                             f"{', '.join(RUNS)})")
    common.add_output_arguments(parser, "workspace/benchmarks/edge")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    from apps import registry

    runs = list(RUNS) if args.run == "all" else [a for a in args.run.split(",") if a]
    unknown = [a for a in runs if a not in RUNS]
    if unknown:
        parser.error(f"--run: no real-data run for {unknown}; expected some of {list(RUNS)}")
    results = {}
    for name in runs:
        cli = importlib.import_module(f"apps.{name}.cli")
        code = cli.main(["run", *RUNS[name], "--workspace", args.workspace])
        results[f"{name}_exit_code"] = code
    for name in registry.APPS:
        app = registry.load(name)
        config = app.config_class.preset("default")
        found = _latest_report(args.workspace, config.model_name)
        if found:
            print_report(app.command, *found)
            results[name] = found[1]
    if not any(name in results for name in registry.APPS):
        print(f"no edge reports under {args.workspace}/serving/edge: use --run", file=sys.stderr)
        return 2
    common.finish(results, time.perf_counter() - start, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
