"""Benchmark of the sensor-vibration app on the real CWRU 12 kHz drive-end data.

Trains the ``default`` preset without TFX (data.ingest -> local TFT analysis ->
trainer.train, the same code the pipeline runs) and compares it, in the same run, with a
classical baseline: the log-magnitude FFT of each window, standardized, fed to a logistic
regression. Scenarios:

  (a) time-block split over all loads (each recording's last block is eval);
  (b) one motor load held out entirely (``--holdout-load``);
  (c) trained on one load only (``--source-load``), tested on all windows of the others;
  (d) the eval windows of (a) under additive white noise at 0 dB SNR (noise added to the
      raw windows, per window and channel, fixed seed; the same windows for both models).

It then runs the real TFX pipeline once with the default preset in a fresh workspace and
reports (e) each component's wall time from ML Metadata and (f) the TFLite variants'
size, latency and accuracy from the edge report the pipeline wrote.

    .venv/bin/python benchmarks/sensor_vibration.py --data DIR [--holdout-load 2]
        [--source-load 0] [--seeds 0,1,2] [--epochs N] [--skip-pipeline] [--out results.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import shutil
import sys
import time

import suite  # noqa: F401  (Keras policy before TensorFlow)
from suite.quiet import quiet

import common  # noqa: E402  (benchmarks/common.py)

quiet()  # before TensorFlow loads, so the stack's known noise stays out of the report

import numpy as np  # noqa: E402

from apps.sensor_vibration import data, preprocessing, trainer  # noqa: E402
from apps.sensor_vibration.config import VibrationConfig  # noqa: E402
from apps.sensor_vibration.features import LABEL, SIGNAL, SIGNAL_XF  # noqa: E402
from suite import examples_io  # noqa: E402
from suite.config import to_dict  # noqa: E402

PRESET = "default"
NOISE_SNR_DB = 0.0
NOISE_SEED = 0
TARGETS = {"a": 1.0, "b": 0.999, "c": 0.97, "d": 0.90}
DEFAULT_WORKSPACE = os.path.join("workspace", "benchmarks", "sensor_vibration")


def say(message: str) -> None:
    """Prints a timestamped progress line."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------------------
# Scenario data


def _split_files(examples_dir: str) -> tuple[list[str], list[str]]:
    """The train and eval TFRecord files of an examples folder."""
    return (sorted(glob.glob(os.path.join(examples_dir, "train", "*"))),
            sorted(glob.glob(os.path.join(examples_dir, "eval", "*"))))


def _write_records(path: str, records: list[bytes]) -> None:
    """Writes serialized examples to one TFRecord file."""
    import tensorflow as tf

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)


def source_load_files(data_dir: str, config: VibrationConfig, source_load: int,
                      out_dir: str) -> tuple[list[str], list[str]]:
    """Train files holding every window of ``source_load``, eval files every other window.

    This is the holdout split of ``source_load`` with its sides swapped; the train side is
    shuffled once with a fixed seed, as ``data.ingest`` does.
    """
    recordings = data.load_recordings(data_dir, config.data)
    plan = data.window_examples(
        recordings, dataclasses.replace(config.data, holdout_load=source_load))
    train = plan["eval"]
    train = [train[k] for k in np.random.default_rng(0).permutation(len(train))]
    shutil.rmtree(out_dir, ignore_errors=True)
    train_file = os.path.join(out_dir, "train", "data.tfrecord")
    eval_file = os.path.join(out_dir, "eval", "data.tfrecord")
    _write_records(train_file, train)
    _write_records(eval_file, plan["train"])
    return [train_file], [eval_file]


def read_windows(files: list[str], config: VibrationConfig) -> tuple[np.ndarray, np.ndarray]:
    """Raw windows [n, window, channels] (float32) and labels [n] of TFRecord files."""
    import tensorflow as tf

    spec = {k: v for k, v in preprocessing.raw_feature_spec(config).items()
            if k in (SIGNAL, LABEL)}
    xs, ys = [], []
    for batch in examples_io.raw_dataset(files).batch(1024):
        parsed = tf.io.parse_example(batch, spec)
        xs.append(parsed[SIGNAL].numpy())
        ys.append(parsed[LABEL].numpy())
    x = np.concatenate(xs).reshape(-1, config.data.window, len(config.data.channels))
    return x, np.concatenate(ys)


def add_white_noise(x: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    """x plus Gaussian white noise at ``snr_db`` relative to each window's (and channel's)
    mean power."""
    rng = np.random.default_rng(seed)
    power = np.mean(np.square(x, dtype=np.float64), axis=1, keepdims=True)
    noise = rng.standard_normal(x.shape) * np.sqrt(power / 10.0 ** (snr_db / 10.0))
    return (x + noise).astype(np.float32)


# --------------------------------------------------------------------------------------
# Models


def train_deep(train_files: list[str], config: VibrationConfig, transform_dir: str):
    """TFT analysis of the train files, then trainer.train; returns (model, tft output,
    training figures)."""
    from components import transform_local

    shutil.rmtree(transform_dir, ignore_errors=True)
    start = time.perf_counter()
    custom_config = {"config": to_dict(config)}
    tft_output = transform_local.analyze(
        train_files, preprocessing.raw_feature_spec(config),
        lambda inputs: preprocessing.preprocessing_fn(inputs, custom_config), transform_dir)
    analyze_s = time.perf_counter() - start
    dataset = examples_io.transformed_dataset(train_files, tft_output, config.train.batch_size,
                                              SIGNAL_XF, LABEL)
    n_train = sum(1 for _ in examples_io.raw_dataset(train_files))
    start = time.perf_counter()
    model = trainer.train(dataset, None, config, verbose=0)
    train_s = time.perf_counter() - start
    figures = {"train_windows": n_train, "epochs": config.train.epochs,
               "analyze_s": analyze_s, "train_s": train_s,
               "windows_per_s": n_train * config.train.epochs / train_s}
    return model, tft_output, figures


def deep_predict(model, tft_output, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class ids the model gives raw windows, through the same transform graph as training."""
    import tensorflow as tf

    layer = tft_output.transform_features_layer()
    flat = x.reshape(len(x), -1)
    classes = []
    for i in range(0, len(x), batch_size):
        features = layer({SIGNAL: tf.constant(flat[i:i + batch_size])})
        probabilities = model(features[SIGNAL_XF], training=False)
        classes.append(np.argmax(probabilities, axis=1))
    return np.concatenate(classes)


def fft_features(x: np.ndarray) -> np.ndarray:
    """Log-magnitude spectrum of each window, channels concatenated: [n, channels * bins]."""
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64), axis=1))
    return np.log(spectrum + 1e-8).transpose(0, 2, 1).reshape(len(x), -1)


def train_baseline(x: np.ndarray, y: np.ndarray):
    """Standardized log-FFT features + logistic regression, fitted on raw windows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return model.fit(fft_features(x), y)


def accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Share of windows classified correctly."""
    return float(np.mean(predicted == labels))


def per_class_errors(predicted: np.ndarray, labels: np.ndarray,
                     classes: tuple[str, ...]) -> dict[str, int]:
    """Misclassified windows per (true -> predicted) class pair, most frequent first."""
    pairs: dict[str, int] = {}
    for true, pred in zip(labels[predicted != labels], predicted[predicted != labels],
                          strict=True):
        key = f"{classes[true]}->{classes[pred]}"
        pairs[key] = pairs.get(key, 0) + 1
    return dict(sorted(pairs.items(), key=lambda item: -item[1]))


def run_scenario(name: str, train_files: list[str], eval_files: list[str],
                 config: VibrationConfig, work_dir: str, seeds: list[int], *,
                 noise: bool = False) -> dict:
    """Trains the deep model once per seed and the baseline once on ``train_files``, scores
    them on ``eval_files`` (and, when ``noise``, on the same eval windows at NOISE_SNR_DB);
    returns the figures, the deep model's accuracy as the mean over the seeds."""
    classes = config.data.classes
    x_train, y_train = read_windows(train_files, config)
    start = time.perf_counter()
    baseline = train_baseline(x_train, y_train)
    baseline_fit_s = time.perf_counter() - start
    x_eval, y_eval = read_windows(eval_files, config)
    evals = {name: x_eval}
    if noise:
        evals["d"] = add_white_noise(x_eval, NOISE_SNR_DB, NOISE_SEED)
    results = {key: {"eval_windows": len(y_eval), "baseline_fit_s": baseline_fit_s,
                     "baseline": accuracy(baseline.predict(fft_features(x)), y_eval),
                     "deep_per_seed": [], "deep_errors": {}}
               for key, x in evals.items()}
    for seed in seeds:
        seeded = dataclasses.replace(config, train=dataclasses.replace(config.train, seed=seed))
        say(f"({name}) training the deep model, seed {seed}")
        model, tft_output, figures = train_deep(
            train_files, seeded, os.path.join(work_dir, "transform"))
        say(f"({name}) trained in {figures['train_s']:.0f} s "
            f"({figures['windows_per_s']:.0f} windows/s)")
        for key, x in evals.items():
            deep = deep_predict(model, tft_output, x)
            result = results[key]
            result.update(figures)
            result["deep_per_seed"].append(accuracy(deep, y_eval))
            for pair, count in per_class_errors(deep, y_eval, classes).items():
                result["deep_errors"][pair] = result["deep_errors"].get(pair, 0) + count
            say(f"({key}) seed {seed}: deep {result['deep_per_seed'][-1]:.4f}  "
                f"baseline {result['baseline']:.4f}  most frequent deep errors "
                f"{dict(list(per_class_errors(deep, y_eval, classes).items())[:3])}")
    for result in results.values():
        result["deep"] = float(np.mean(result["deep_per_seed"]))
        result["deep_min"] = min(result["deep_per_seed"])
        result["deep_errors"] = dict(sorted(result["deep_errors"].items(),
                                            key=lambda item: -item[1]))
    return results


# --------------------------------------------------------------------------------------
# Pipeline run


def run_pipeline(data_dir: str, workspace: str, epochs: int | None) -> dict:
    """Runs the real TFX pipeline once in a fresh folder; returns component wall times,
    the pipeline's own wall time and the edge (TFLite) report."""
    from apps.sensor_vibration import cli
    from apps.sensor_vibration.app import APP
    from pipelines.results import component_wall_times, latest_run

    shutil.rmtree(workspace, ignore_errors=True)
    argv = ["run", "--data", data_dir, "--preset", PRESET, "--workspace", workspace]
    if epochs is not None:
        argv += ["--epochs", str(epochs)]
    say("running the TFX pipeline: sensor-vibration " + " ".join(argv[1:]))
    start = time.perf_counter()
    code = cli.main(argv)
    wall_s = time.perf_counter() - start
    metadata_path = os.path.join(workspace, APP.name, "metadata.sqlite")
    summary = latest_run(metadata_path, APP.command)
    result = {"exit_code": code, "wall_s": wall_s, "blessed": summary.blessed,
              "states": summary.states,
              "component_wall_s": component_wall_times(metadata_path, APP.command),
              "edge_dir": summary.edge_dir, "edge_report": None}
    if summary.edge_dir:
        with open(os.path.join(summary.edge_dir, "report.json")) as f:
            result["edge_report"] = json.load(f)
    return result


# --------------------------------------------------------------------------------------
# Report


def print_report(results: dict) -> None:
    """Prints the pipeline tables (when run), training figures and the scenario table."""
    pipeline = results.get("pipeline")
    if pipeline:
        print(f"\n(e) pipeline component wall times (exit code {pipeline['exit_code']}, "
              f"blessed {pipeline['blessed']}, whole run {pipeline['wall_s']:.0f} s)")
        times = pipeline["component_wall_s"]
        common.print_table(["component", "state", "wall s"],
                           [[name, pipeline["states"].get(name, "?"), f"{s:.1f}"]
                            for name, s in times.items()]
                           + [["sum", "", f"{sum(times.values()):.1f}"]])
        report = pipeline["edge_report"]
        if report:
            reference = report.get("reference", {}).get("accuracy")
            print(f"\n(f) TFLite variants on {report.get('n_examples')} eval windows "
                  f"(SavedModel accuracy {common.fmt(reference, 4)})")
            common.print_variants(report)
        else:
            print("\n(f) no TFLite models: the pipeline pushed nothing")

    scenarios = results["scenarios"]
    print("\ntraining (deep model, default preset)")
    common.print_table(["scenario", "train windows", "epochs", "train s", "windows/s", "analyze s",
                        "baseline fit s"],
                       [[key, s["train_windows"], s["epochs"], f"{s['train_s']:.0f}",
                         f"{s['windows_per_s']:.0f}", f"{s['analyze_s']:.0f}",
                         f"{s['baseline_fit_s']:.0f}"]
                        for key, s in scenarios.items() if key != "d"])

    seeds = results["seeds"]
    print(f"\nscenario accuracy (deep model: mean and worst over seeds {seeds})")
    rows = []
    for key, s in scenarios.items():
        met = "yes" if s["deep"] >= TARGETS[key] else "NO"
        rows.append([s["title"], f"{s['deep']:.4f}", f"{s['deep_min']:.4f}",
                     f"{s['baseline']:.4f}", f">= {TARGETS[key]:.3f}", met])
    common.print_table(["scenario", "deep mean", "deep worst", "baseline", "target (mean)", "met?"],
                       rows)


# --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line of the benchmark."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="CWRU 12 kHz drive-end folder (recordings + manifest.csv)")
    parser.add_argument("--holdout-load", type=int, default=2, metavar="HP",
                        help="load held out in scenario (b) (default: 2)")
    parser.add_argument("--source-load", type=int, default=0, metavar="HP",
                        help="the only training load in scenario (c) (default: 0)")
    parser.add_argument("--seeds", default="0,1,2", metavar="S,S,...",
                        help="training seeds of the deep model in each scenario (default: 0,1,2)")
    parser.add_argument("--epochs", type=int, help="training epochs (overrides the preset)")
    parser.add_argument("--skip-pipeline", action="store_true",
                        help="skip the TFX pipeline run (no component times, no TFLite table)")
    common.add_output_arguments(parser, DEFAULT_WORKSPACE)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Runs the scenarios (and the pipeline), prints the tables; 0 when every target is met."""
    args = parse_args(argv)
    seeds = [int(seed) for seed in args.seeds.split(",")]
    start = time.perf_counter()
    config = VibrationConfig.preset(PRESET)
    if args.epochs is not None:
        config = dataclasses.replace(
            config, train=dataclasses.replace(config.train, epochs=args.epochs))
    workspace = os.path.abspath(args.workspace)
    examples_root = os.path.join(workspace, "examples")
    # CWRU's Normal recordings are at load 0 only: a held-out load has no Normal windows.
    holdout = dataclasses.replace(config, data=dataclasses.replace(
        config.data, holdout_load=args.holdout_load, allow_missing_classes=True))

    titles = {
        "a": "(a) time-block split, all loads",
        "b": f"(b) load {args.holdout_load} held out",
        "c": f"(c) trained on load {args.source_load} only, tested on the others",
        "d": f"(d) (a) eval windows at {NOISE_SNR_DB:g} dB SNR white noise",
    }
    scenarios: dict[str, dict] = {}
    say("(a) ingesting the time-block split")
    files = _split_files(data.ingest(args.data, config.data, examples_root).examples_dir)
    scenarios.update(run_scenario("a", *files, config, os.path.join(workspace, "a"), seeds,
                                  noise=True))
    say(f"(b) ingesting with load {args.holdout_load} held out")
    files = _split_files(data.ingest(args.data, holdout.data, examples_root).examples_dir)
    scenarios.update(run_scenario("b", *files, holdout, os.path.join(workspace, "b"), seeds))
    say(f"(c) writing windows of load {args.source_load} (train) and the others (eval)")
    files = source_load_files(args.data, config, args.source_load,
                              os.path.join(workspace, "c", "examples"))
    scenarios.update(run_scenario("c", *files, config, os.path.join(workspace, "c"), seeds))
    for key in scenarios:
        scenarios[key]["title"] = titles[key]
    scenarios = {key: scenarios[key] for key in sorted(scenarios)}

    results = {"preset": PRESET, "config": to_dict(config), "data": os.path.abspath(args.data),
               "noise_snr_db": NOISE_SNR_DB, "seeds": seeds, "targets": TARGETS,
               "scenarios": scenarios}
    if not args.skip_pipeline:
        results["pipeline"] = run_pipeline(
            os.path.abspath(args.data), os.path.join(workspace, "pipeline"), args.epochs)
    results["wall_s"] = time.perf_counter() - start

    print_report(results)
    common.finish(results, results["wall_s"], args.out)
    return 0 if all(s["deep"] >= TARGETS[k] for k, s in scenarios.items()) else 1


if __name__ == "__main__":
    sys.exit(main())
