"""Benchmark of the medical-scans app on real data (../shared/datasets/medical).

Trains the preset without TFX (data.ingest -> local TFT analysis -> trainer.train, the same
code the pipeline runs) and scores it on data the model never saw, beside a baseline
computed in the same run: a logistic regression on the same decoded images downsampled to
``BASELINE_PX`` pixels, with its own threshold chosen on the same validation split.

  (a) chest_xray: the official train folder, 15% of the patients of each class held out as
      the eval split (person ids from the file names; a NORMAL file without one is its own
      patient), 10% of the remaining patients as the validation split (threshold, best
      epoch); the default preset.
  (b) PneumoniaMNIST: train (validation carved by image) -> the official val arrays.

For each: AUC, accuracy, sensitivity, specificity, precision at the model's threshold,
training time and throughput, inference throughput, and the TFLite float32 / int8 size,
single-image latency and AUC (the AUC drop of int8).

    .venv/bin/python benchmarks/medical_scans.py [--chest-xray DIR] [--npz FILE]
        [--minutes-a 30] [--minutes-b 10] [--only a|b] [--workspace DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

import suite  # noqa: F401  (Keras policy before TensorFlow)
from suite.quiet import quiet

import common  # noqa: E402  (benchmarks/common.py)

quiet()  # before TensorFlow loads, so the stack's known noise stays out of the report

import numpy as np  # noqa: E402

from apps.medical_scans import data, evaluation, preprocessing, trainer  # noqa: E402
from apps.base.cli import apply_overrides  # noqa: E402
from apps.medical_scans.config import MedicalConfig  # noqa: E402
from apps.medical_scans.features import IMAGE_XF, LABEL, SPLITS  # noqa: E402
from suite import examples_io  # noqa: E402
from suite.metrics import roc_auc  # noqa: E402
from suite.progress import say  # noqa: E402
from suite.config import to_dict  # noqa: E402

DATASETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                        "datasets", "medical")
DEFAULT_WORKSPACE = os.path.join("workspace", "benchmarks", "medical_scans")
BASELINE_PX = 32
TARGETS = {"a": {"auc": 0.97, "accuracy": 0.93}, "b": {"auc": 0.97}}


def _files(examples_dir: str, split: str) -> list[str]:
    return [os.path.join(examples_dir, split, "data.tfrecord")]


def _arrays(dataset) -> tuple[np.ndarray, np.ndarray]:
    """All (images, labels) of a transformed dataset as numpy arrays."""
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in dataset], strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def baseline(train, validation, evaluation_set) -> dict:
    """Logistic regression on downsampled pixels: threshold on validation, report on eval."""
    import tensorflow as tf
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def features(x):
        small = tf.image.resize(x, [BASELINE_PX, BASELINE_PX], antialias=True).numpy()
        return small.reshape(len(x), -1)

    start = time.perf_counter()
    model = make_pipeline(StandardScaler(), LogisticRegression(
        C=0.01, max_iter=3000, class_weight="balanced"))
    model.fit(features(train[0]), train[1])
    fit_s = time.perf_counter() - start
    threshold = 0.5
    if len(validation[1]):
        threshold = evaluation.choose_threshold(
            validation[1], model.predict_proba(features(validation[0]))[:, 1])
    scores = model.predict_proba(features(evaluation_set[0]))[:, 1]
    return {**evaluation.binary_report(evaluation_set[1], scores, threshold), "fit_s": fit_s}


def tflite_figures(model, x_train: np.ndarray, x_eval: np.ndarray, y_eval: np.ndarray,
                   work_dir: str) -> dict:
    """float32 and int8 TFLite files of the bare model: size, latency, AUC."""
    from serving import tflite
    from serving.export import export_core_model

    core = export_core_model(model, os.path.join(work_dir, "core_model"))
    rng = np.random.default_rng(0)
    representative = x_train[rng.choice(len(x_train), min(200, len(x_train)), replace=False)]
    paths, _ = tflite.convert_variants(core, work_dir, representative,
                                       variants=("float32", "int8"))
    reference = model.predict(x_eval, batch_size=64, verbose=0)
    report = tflite.evaluate(paths, x_eval, reference, y_eval, latency_examples=50)
    out = {}
    for variant, path in paths.items():
        scores = tflite.run_tflite(path, x_eval, batch_size=64)[:, 1]
        r = report["variants"][variant]
        out[variant] = {"size_kib": r["size_bytes"] / 1024,
                        "latency_ms_p50": r["latency_ms_p50"],
                        "auc": roc_auc(y_eval, scores),
                        "agreement": r["agreement"]}
    return out


def run_dataset(key: str, path: str, config: MedicalConfig, workspace: str) -> dict:
    """Ingests, trains and scores one data set; returns its figures."""
    from components import transform_local

    work = os.path.join(workspace, key)
    say(f"({key}) ingesting {path}")
    ingested = data.ingest(path, config.data, os.path.join(work, "examples"), progress=say)
    counts = ingested.summary["counts"]
    say(f"({key}) examples per split: {counts}")
    transform_dir = os.path.join(work, "transform")
    shutil.rmtree(transform_dir, ignore_errors=True)
    custom = {"config": to_dict(config)}
    tft_output = transform_local.analyze(
        _files(ingested.examples_dir, "train"), preprocessing.raw_feature_spec(config),
        lambda inputs: preprocessing.preprocessing_fn(inputs, custom), transform_dir)

    def dataset(split):
        return examples_io.transformed_dataset(_files(ingested.examples_dir, split), tft_output,
                                               config.train.batch_size, IMAGE_XF, LABEL)

    train_ds, validation_ds, eval_ds = (dataset(s) for s in SPLITS)
    say(f"({key}) training {config.model.kind} at {config.model.image_size} px "
        f"(at most {config.train.epochs} epochs, {config.train.max_minutes} min)")
    result = trainer.train(train_ds, validation_ds, config, log=say)
    epochs = len(result.history)
    x_eval, y_eval = _arrays(eval_ds)
    start = time.perf_counter()
    scores = result.model.predict(x_eval, batch_size=64, verbose=0)[:, 1]
    infer_s = time.perf_counter() - start
    deep = evaluation.binary_report(y_eval, scores, result.threshold)
    say(f"({key}) deep model: " + _line(deep))
    say(f"({key}) fitting the baseline")
    train_arrays = _arrays(train_ds)
    base = baseline(train_arrays, _arrays(validation_ds), (x_eval, y_eval))
    say(f"({key}) baseline: " + _line(base))
    say(f"({key}) TFLite float32 and int8")
    edge = tflite_figures(result.model, train_arrays[0], x_eval, y_eval,
                          os.path.join(work, "tflite"))
    return {
        "data": os.path.abspath(path), "counts": counts, "config": to_dict(config),
        "deep": deep, "baseline": base, "tflite": edge,
        "validation": result.validation, "best_epoch": result.best_epoch,
        "epochs_run": epochs, "train_s": result.train_seconds,
        "train_images": result.train_images,
        "train_images_per_s": result.train_images * epochs / result.train_seconds,
        "inference_images_per_s": len(y_eval) / infer_s,
        "history": result.history,
    }


def _line(report: dict) -> str:
    return "  ".join(f"{k} {report[k]:.4f}" for k in
                     ("auc", "accuracy", "sensitivity", "specificity", "precision", "threshold"))


def print_report(results: dict) -> None:
    """Side-by-side tables of every data set that ran."""
    names = {"a": "(a) chest_xray, patient split", "b": "(b) PneumoniaMNIST train -> val"}
    for key, r in results.items():
        print(f"\n{names[key]}: eval {r['counts']['eval']} images, "
              f"{r['train_images']} training images, {r['epochs_run']} epochs in "
              f"{r['train_s'] / 60:.1f} min ({r['train_images_per_s']:.0f} images/s; best "
              f"epoch {r['best_epoch']}), inference {r['inference_images_per_s']:.0f} images/s")
        metrics = ("auc", "accuracy", "sensitivity", "specificity", "precision", "threshold")
        print(f"  {'':<26}" + "".join(f"{m:>13}" for m in metrics))
        for label, report in (("CNN", r["deep"]), (f"baseline (LR, {BASELINE_PX} px)",
                                                    r["baseline"])):
            print(f"  {label:<26}" + "".join(f"{report[m]:>13.4f}" for m in metrics))
        for variant, t in r["tflite"].items():
            print(f"  TFLite {variant:<8} {t['size_kib']:9.1f} KiB  p50 "
                  f"{t['latency_ms_p50']:.2f} ms/image  AUC {t['auc']:.4f} (drop "
                  f"{r['deep']['auc'] - t['auc']:+.4f})  agreement {t['agreement']:.4f}")
        for metric, target in TARGETS[key].items():
            value = r["deep"][metric]
            print(f"  target {metric} >= {target}: {value:.4f} "
                  f"{'met' if value >= target else 'NOT met'}")


def parse_args(argv):
    """The command line of the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chest-xray", default=os.path.join(DATASETS, "chest_xray", "train"),
                        metavar="DIR", help="class folders NORMAL/ and PNEUMONIA/")
    parser.add_argument("--npz", default=os.path.join(DATASETS, "pneumoniamnist_trainval.npz"),
                        metavar="FILE", help="PneumoniaMNIST arrays")
    parser.add_argument("--only", choices=["a", "b"], help="run one data set only")
    parser.add_argument("--minutes-a", type=float, default=30.0,
                        help="training time budget for (a) (default: 30)")
    parser.add_argument("--minutes-b", type=float, default=10.0,
                        help="training time budget for (b) (default: 10)")
    common.add_output_arguments(parser, DEFAULT_WORKSPACE, overrides="both runs")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Runs the data sets, prints the tables; 0 when every target is met."""
    args = parse_args(argv)
    workspace = os.path.abspath(args.workspace)
    start = time.perf_counter()
    base = MedicalConfig.preset("default")
    runs = {
        # The default preset, as the pipeline would run it on this folder.
        "a": (args.chest_xray, apply_overrides(base, {"train.max_minutes": args.minutes_a},
                                               args.set)),
        # 28 px arrays: 64 px input (upsampled) and no file-name patients or subtypes.
        "b": (args.npz, apply_overrides(base, {
            "data.format": "npz", "data.subtype_pattern": "", "model.image_size": 64,
            "train.max_minutes": args.minutes_b}, args.set)),
    }
    results = {}
    for key, (path, config) in runs.items():
        if args.only and key != args.only:
            continue
        results[key] = run_dataset(key, path, config, workspace)
    print_report(results)
    common.finish(results, time.perf_counter() - start, args.out)
    met = all(results[k]["deep"][m] >= t for k in results for m, t in TARGETS[k].items())
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
