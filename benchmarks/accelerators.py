"""Benchmark of training throughput on the accelerators present: every app's ``default``
preset trained through its own ``fit`` hook (the code the pipeline's Trainer runs) on the
GPUs or the TPU this machine has, with mixed precision and XLA off and on, beside the CPU
figure measured in the same run (a child process that sees no accelerator).

The data is each app's generated demo data (its real format, ingested and analysed by TFT
as a run does), not the real data sets: only throughput is measured. The training files
are listed several times over, so that one epoch holds enough steps that the per-epoch
validation hardly interrupts the clock. Each training is timed over its steps (the first
steps, which trace and compile, and the first step of each epoch are not counted) until
its share of ``--minutes`` is spent, then stopped. The strategy is the one
``train.distribute=auto`` picks (MirroredStrategy over several GPUs), with the preset's
batch size per replica (``train.scale_batch_with_replicas``); "on" is
``train.mixed_precision=auto`` (mixed_float16 on a GPU, mixed_bfloat16 on a TPU, float32 on
the CPU) and ``train.jit_compile=true``; "off" is float32 and ``train.jit_compile=false``.

  .venv/bin/python benchmarks/accelerators.py --apps all --minutes 2 [--out results.json]
  .venv/bin/python benchmarks/accelerators.py --apps sensor_vibration,speech --minutes 1
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import subprocess
import sys
import time

import suite  # noqa: F401  (Keras policy before TensorFlow)
from suite.quiet import quiet

import common  # noqa: E402  (benchmarks/common.py)

quiet()  # before TensorFlow loads, so the stack's known noise stays out of the report

from apps import registry  # noqa: E402

PRESET = "default"
DEFAULT_WORKSPACE = os.path.join("workspace", "benchmarks", "accelerators")
UNITS = {"sensor_vibration": "windows", "medical_scans": "images", "clickstreams": "examples",
         "speech": "clips", "defect_images": "images"}
STEPS_PER_EPOCH = 50  # training files listed often enough for about this many steps
WARMUP_STEPS = 3  # not timed: tracing, XLA compilation, the input pipeline filling up
# Each run's (name, train.mixed_precision, train.jit_compile).
RUNS = (("off", "off", False), ("on", "auto", True))
# Where the demo data does not fit the default preset's splits: speech's demo has
# recordings 0-4 per speaker, all of which the preset holds out for evaluation.
DEMO_DATA = {"speech": {"data.eval_indices": "0"}}


def say(message: str) -> None:
    """Prints a timestamped progress line."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class TimeSpent(Exception):  # noqa: N818  (not an error: the end of a timed run)
    """Raised by the meter when a run's time is spent: it ends the training at once."""


# --------------------------------------------------------------------------------------
# Data and config


def prepare(name: str, workspace: str) -> dict:
    """The app's demo data for the default preset, ingested and analysed by TFT (as a run
    does); returns what a training needs, also written to ``<workspace>/<app>/inputs.json``
    for the CPU child."""
    from components import transform_local
    from suite.config import replace_path, to_dict

    app, folder = registry.load(name), os.path.join(workspace, name)
    record_path = os.path.join(folder, "inputs.json")
    if os.path.exists(record_path):
        with open(record_path) as f:
            return json.load(f)
    config = app.config_class.preset(PRESET)
    for field, value in DEMO_DATA.get(name, {}).items():
        config = replace_path(config, field, value)
    raw = app.demo_data(os.path.join(folder, "raw"), config, say)
    ingested = app.ingest(raw, config, os.path.join(folder, "examples"), say)
    config = app.with_ingested(config, ingested)
    spec = app.spec(config)

    def files(split: str) -> list[str]:
        split_dir = os.path.join(ingested.examples_dir, split)
        return sorted(os.path.join(split_dir, f) for f in os.listdir(split_dir))

    preprocessing = importlib.import_module(f"apps.{name}.preprocessing")
    custom = {"config": to_dict(config)}
    transform_dir = os.path.join(folder, "transform")
    transform_local.analyze(files("train"), preprocessing.raw_feature_spec(config),
                            lambda inputs: spec.preprocessing_fn(inputs, custom),
                            transform_dir)
    record = {"app": name, "config": to_dict(config), "train_files": files("train"),
              "eval_files": files(spec.trainer_eval_split), "transform_dir": transform_dir,
              "train_examples": int(ingested.counts["train"])}
    with open(record_path, "w") as f:
        json.dump(record, f)
    return record


def with_train(config, **values):
    """``config`` with train fields replaced."""
    from suite.config import replace_path

    for field, value in values.items():
        config = replace_path(config, f"train.{field}", value)
    return config


# --------------------------------------------------------------------------------------
# One timed training


def measure(record: dict, precision: str, jit: bool, seconds: float) -> dict:
    """Trains the app on the prepared data with ``train.mixed_precision=precision`` and
    ``train.jit_compile=jit`` for ``seconds`` of timed steps; returns the figures."""
    import keras
    import tensorflow_transform as tft

    from pipelines.trainer import TrainerInputs
    from suite import distribute
    from suite.config import from_dict

    name = record["app"]
    app = registry.load(name)
    config = from_dict(app.config_class, record["config"])
    config = with_train(config, epochs=100000, mixed_precision=precision, jit_compile=jit,
                        scale_batch_with_replicas=True)
    plan = distribute.plan(config.train)
    repeat = max(1, math.ceil(STEPS_PER_EPOCH * plan.batch_size
                              / max(1, record["train_examples"])))
    inputs = TrainerInputs(record["train_files"] * repeat, record["eval_files"],
                           tft.TFTransformOutput(record["transform_dir"]))
    figures = {"app": name, "unit": UNITS[name], "device": device_name(plan),
               "replicas": plan.replicas, "batch": plan.batch_size, "precision": plan.policy,
               "xla": jit, "files_repeated": repeat}

    class Meter(keras.callbacks.Callback):
        steps, timed, seen, mark = 0, 0.0, 0, None

        def on_train_begin(self, logs=None):
            figures["xla"] = bool(self.model.jit_compile)  # what Keras made of it

        def on_epoch_begin(self, epoch, logs=None):
            self.mark = None

        def on_train_batch_end(self, batch, logs=None):
            now = time.perf_counter()
            self.seen += 1
            if self.seen > WARMUP_STEPS and self.mark is not None:
                self.steps += 1
                self.timed += now - self.mark
            self.mark = now
            if self.timed >= seconds:
                raise TimeSpent

    meter = Meter()
    fit = keras.Model.fit

    def metered_fit(model, *args, callbacks=None, **kwargs):
        return fit(model, *args, callbacks=[*(callbacks or []), meter], **kwargs)

    start = time.perf_counter()
    keras.Model.fit = metered_fit
    try:
        importlib.import_module(f"apps.{name}.trainer").fit(inputs, config)
    except TimeSpent:
        pass
    except Exception as e:  # noqa: BLE001  (one failed run must not end the benchmark)
        figures["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
    finally:
        keras.Model.fit = fit
    figures.update(steps=meter.steps, timed_s=meter.timed,
                   wall_s=time.perf_counter() - start,
                   per_s=(meter.steps * plan.batch_size / meter.timed if meter.timed else None))
    return figures


def device_name(plan) -> str:
    """What the plan trains on, e.g. "GPU x2 (NVIDIA H200)", "TPU x8", "CPU"."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if isinstance(plan.strategy, tf.distribute.TPUStrategy):
        return f"TPU x{plan.replicas}"
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        label = details.get("device_name")
        return f"GPU x{plan.replicas}" + (f" ({label})" if label else "")
    return "CPU" + (f" x{plan.replicas}" if plan.replicas > 1 else "")


def accelerators() -> str | None:
    """The accelerators TensorFlow sees ("2 GPU", "TPU"), or None."""
    import tensorflow as tf

    if os.environ.get("TPU_NAME"):
        return "TPU"
    gpus = tf.config.list_physical_devices("GPU")
    return f"{len(gpus)} GPU" if gpus else None


# --------------------------------------------------------------------------------------
# The runs


def cpu_child(apps: list[str], workspace: str, seconds: float) -> list[dict]:
    """The "off" run of every app in a child process that sees no GPU: the CPU figures."""
    out = os.path.join(workspace, "cpu.json")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1", "TPU_NAME": ""}
    say(f"CPU figures: a child process without accelerators, {seconds:.0f} s per app")
    command = [sys.executable, os.path.abspath(__file__), "--apps", ",".join(apps),
               "--workspace", workspace, "--cpu-child", str(seconds), "--out", out]
    done = subprocess.run(command, env=env, check=False)
    if done.returncode != 0 or not os.path.exists(out):
        return [{"app": a, "device": "CPU", "error": f"CPU child exited {done.returncode}"}
                for a in apps]
    with open(out) as f:
        return json.load(f)


def print_report(results: list[dict], accelerator: str | None) -> None:
    """One table: each app's CPU row, then its rows on the accelerator."""
    print("\ntraining throughput, default presets on generated demo data (training files "
          "repeated to about 50 steps per epoch)")
    if not accelerator:
        print("no GPU or TPU found: the rows are this CPU's, float32 and XLA off, then XLA "
              "on (mixed precision 'auto' is float32 on a CPU)")
    rows = []
    for name in dict.fromkeys(r["app"] for r in results):
        runs = [r for r in results if r["app"] == name]
        cpu = next((r.get("per_s") for r in runs if r.get("baseline")), None)
        for r in runs:
            speedup = (f"{r['per_s'] / cpu:.2f}x" if r.get("per_s") and cpu else "-")
            rows.append([name, r.get("device", "-"), r.get("precision", "-"),
                         "on" if r.get("xla") else "off", r.get("batch", "-"),
                         r.get("steps", "-"), common.fmt(r.get("per_s"), 1),
                         r.get("unit", "-"), speedup, r.get("error", "")[:60]])
    common.print_table(["app", "device", "precision", "XLA", "batch", "timed steps", "per s",
                        "unit", "vs CPU", "error"], rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line of the benchmark."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--apps", default="all", metavar="all|APP,APP",
                        help=f"apps to train (default: all: {', '.join(registry.APPS)})")
    parser.add_argument("--minutes", type=float, default=2.0,
                        help="timed training in all, shared evenly by the apps and runs "
                             "(default: 2; tracing, compilation and data preparation "
                             "come on top)")
    parser.add_argument("--cpu-child", type=float, metavar="SECONDS", help=argparse.SUPPRESS)
    common.add_output_arguments(parser, DEFAULT_WORKSPACE)
    args = parser.parse_args(argv)
    apps = list(registry.APPS) if args.apps == "all" else args.apps.split(",")
    unknown = sorted(set(apps) - set(registry.APPS))
    if unknown:
        parser.error(f"--apps: unknown {unknown}; expected 'all' or some of {registry.APPS}")
    args.app_list = apps
    return args


def main(argv: list[str] | None = None) -> int:
    """Prepares the data, measures every app's runs, prints the table; 0 when every run
    measured something."""
    args = parse_args(argv)
    workspace = os.path.abspath(args.workspace)
    os.makedirs(workspace, exist_ok=True)
    if args.cpu_child is not None:  # the CPU figures, for the parent
        results = []
        for name in args.app_list:
            with open(os.path.join(workspace, name, "inputs.json")) as f:
                record = json.load(f)
            results.append({**measure(record, "off", False, args.cpu_child), "baseline": True})
        with open(args.out, "w") as f:
            json.dump(results, f)
        return 0
    start = time.perf_counter()
    accelerator = accelerators()
    say(f"accelerators: {accelerator or 'none (CPU only)'}; apps: {', '.join(args.app_list)}")
    records = {}
    for name in args.app_list:
        say(f"{name}: demo data, ingestion and TFT analysis ({PRESET} preset)")
        records[name] = prepare(name, workspace)
    runs = len(RUNS) + (1 if accelerator else 0)
    seconds = args.minutes * 60.0 / (len(args.app_list) * runs)
    results = cpu_child(args.app_list, workspace, seconds) if accelerator else []
    for name in args.app_list:
        for label, precision, jit in RUNS:
            say(f"{name}: run {label} (mixed precision {precision}, XLA {jit}), "
                f"{seconds:.0f} s")
            figures = measure(records[name], precision, jit, seconds)
            figures["baseline"] = not accelerator and label == "off"
            results.append(figures)
            say(f"{name} {label}: " + (figures.get("error") or
                                       f"{common.fmt(figures['per_s'], 1)} {figures['unit']}/s"))
    order = {name: i for i, name in enumerate(args.app_list)}
    results.sort(key=lambda r: (order[r["app"]], not r.get("baseline")))
    print_report(results, accelerator)
    common.finish({"accelerator": accelerator, "data": "generated demo data",
                   "runs": results}, time.perf_counter() - start, args.out)
    return 0 if all(r.get("per_s") for r in results) else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
