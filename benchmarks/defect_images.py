"""Benchmark of the defect-images app on NEU surface defects (../shared/datasets/defects).

Runs the app's own code without TFX (data.ingest -> local TFT analysis -> trainer.train, what
the pipeline's Transform and Trainer run) on images 1-240 of each of the six classes
(crazing, inclusion, patches, pitted_surface, rolled-in_scale, scratches), and scores it on
images 201-240, which nothing is tuned on: the validation split (early stopping, thresholds)
is carved from images 1-200.

  (a) classify: train on 1-200 of each class (less the validation share), evaluate on
      201-240: accuracy, per-class recall and precision, the confusion matrix, training time
      and throughput, inference throughput, TFLite float32 / int8 size, latency and
      accuracy; beside a baseline fitted in the same run on the same training images
      (logistic regression on 32 x 32 pixels plus gradient-magnitude and intensity
      histograms). The default preset.
  (b) anomaly: each class in turn is the good part, the other five are defects; the model
      learns the good class's images 1-200 (less the validation share); the threshold is
      chosen on the validation split (its good parts and the other classes' images 1-200);
      AUROC, accuracy, recall on defects and false-alarm rate on 201-240 of all six classes
      (40 good, 200 defects), per choice and the mean; beside a baseline in the same run:
      PCA reconstruction error on 64 x 64 pixels, fitted on the same good images. With
      --compare-autoencoder also the app's convolutional autoencoder method.

    .venv/bin/python benchmarks/defect_images.py [--data DIR] [--only classify|anomaly]
        [--minutes 20] [--good CLASS ...] [--compare-autoencoder] [--set FIELD=JSON]
        [--workspace DIR] [--out FILE]
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

from apps.base.cli import apply_overrides  # noqa: E402
from apps.defect_images import data, evaluation, preprocessing, trainer  # noqa: E402
from apps.defect_images import model as models  # noqa: E402
from apps.defect_images.config import DefectConfig, with_mode  # noqa: E402
from apps.defect_images.features import IMAGE_XF, IS_DEFECT, LABEL, SPLITS  # noqa: E402
from suite import examples_io  # noqa: E402
from suite.config import to_dict  # noqa: E402
from suite.progress import say  # noqa: E402
from suite.metrics import roc_auc  # noqa: E402

NEU = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                   "datasets", "defects", "neu_surface_defects", "images")
DEFAULT_WORKSPACE = os.path.join("workspace", "benchmarks", "defect_images")
TARGETS = {"accuracy": 0.995, "mean_auroc": 0.98, "train_minutes": 20.0}
PUBLISHED_ACCURACY = 0.989  # published CNNs on NEU


def _files(examples_dir: str, split: str) -> list[str]:
    return [os.path.join(examples_dir, split, examples_io.DATA_FILE)]


def _arrays(dataset) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in dataset], strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def eval_boxes(examples_dir: str) -> list[list[float]]:
    """The VOC boxes (fractions, flattened) of each eval example, in file order."""
    import tensorflow as tf  # noqa: PLC0415

    from apps.defect_images.features import BOXES  # noqa: PLC0415

    spec = {BOXES: tf.io.VarLenFeature(tf.float32)}
    return [tf.sparse.to_dense(tf.io.parse_single_example(raw, spec)[BOXES]).numpy().tolist()
            for raw in examples_io.raw_dataset(_files(examples_dir, "eval"))]


def heat_figures(heat: np.ndarray, boxes: list[list[float]], chosen) -> dict:
    """Mean share of the heat inside the boxes, mean box area share and their ratio, over
    the ``chosen`` images that have boxes."""
    size = heat.shape[1]
    figures = [evaluation.heat_in_boxes(heat[i], data.boxes_mask(boxes[i], size, size))
               for i in chosen if boxes[i]]
    figures = [f for f in figures if f["heat_in_boxes"] == f["heat_in_boxes"]]
    if not figures:
        return {}
    inside = float(np.mean([f["heat_in_boxes"] for f in figures]))
    area = float(np.mean([f["box_area"] for f in figures]))
    return {"images": len(figures), "heat_in_boxes": inside, "box_area": area,
            "lift": inside / area}


def prepare(path: str, config: DefectConfig, work: str, label: str):
    """Ingests, analyses the transform on the training split; returns the summary and the
    (images, labels) arrays of each split (and the eval split's boxes)."""
    from components import transform_local  # noqa: PLC0415

    ingested = data.ingest(path, config.data, os.path.join(work, "examples"), progress=say,
                           mode=config.mode)
    transform_dir = os.path.join(work, "transform")
    shutil.rmtree(transform_dir, ignore_errors=True)
    custom = {"config": to_dict(config)}
    tft_output = transform_local.analyze(
        _files(ingested.examples_dir, "train"), preprocessing.raw_feature_spec(config),
        lambda inputs: preprocessing.preprocessing_fn(inputs, custom), transform_dir)
    arrays = {s: _arrays(examples_io.transformed_dataset(
        _files(ingested.examples_dir, s), tft_output, 64, IMAGE_XF, label)) for s in SPLITS}
    arrays["boxes"] = eval_boxes(ingested.examples_dir)
    return ingested.summary, arrays


def _batches(x: np.ndarray, y: np.ndarray, batch: int):
    import tensorflow as tf  # noqa: PLC0415

    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


# --------------------------------------------------------------------------------------
# (a) classify


def baseline_features(x: np.ndarray) -> np.ndarray:
    """32 x 32 pixels, a 16-bin gradient-magnitude histogram and a 16-bin intensity
    histogram of each image (intensities in [0, 1])."""
    import tensorflow as tf  # noqa: PLC0415

    small = tf.image.resize(x, [32, 32], antialias=True).numpy().reshape(len(x), -1)
    gy, gx = np.gradient(x[..., 0], axis=(1, 2))
    magnitude = np.hypot(gx, gy)
    grad = np.stack([np.histogram(m, bins=16, range=(0, 0.25))[0] for m in magnitude]) \
        / magnitude[0].size
    intensity = np.stack([np.histogram(i, bins=16, range=(0, 1))[0] for i in x[..., 0]]) \
        / x[0].size
    return np.concatenate([small, grad, intensity], axis=1)


def classify_baseline(train, validation, evaluation_set, classes) -> dict:
    """Logistic regression on baseline_features: its regularisation chosen on the
    validation split, fitted on train, scored on eval."""
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
    from sklearn.pipeline import make_pipeline  # noqa: PLC0415
    from sklearn.preprocessing import StandardScaler  # noqa: PLC0415

    start = time.perf_counter()
    features = {"train": baseline_features(train[0]),
                "validation": baseline_features(validation[0])}
    best = None
    for c in (0.01, 0.1, 1.0, 10.0):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
        model.fit(features["train"], train[1])
        accuracy = float(np.mean(model.predict(features["validation"]) == validation[1]))
        if best is None or accuracy > best[0]:
            best = (accuracy, c, model)
    fit_s = time.perf_counter() - start
    predicted = best[2].predict(baseline_features(evaluation_set[0]))
    return {**evaluation.classification_report(evaluation_set[1], predicted, classes),
            "fit_s": fit_s, "C": best[1], "validation_accuracy": best[0]}


def tflite_figures(model, x_train: np.ndarray, x_eval: np.ndarray, y_eval: np.ndarray,
                   work_dir: str) -> dict:
    """float32 and int8 TFLite files of the bare model: size, latency, accuracy."""
    from serving import tflite  # noqa: PLC0415
    from serving.export import export_core_model  # noqa: PLC0415

    shutil.rmtree(work_dir, ignore_errors=True)
    core = export_core_model(model, os.path.join(work_dir, "core_model"))
    rng = np.random.default_rng(0)
    representative = x_train[rng.choice(len(x_train), min(200, len(x_train)), replace=False)]
    paths, _ = tflite.convert_variants(core, work_dir, representative,
                                       variants=("float32", "int8"))
    reference = model.predict(x_eval, batch_size=64, verbose=0)
    report = tflite.evaluate(paths, x_eval, reference, y_eval, latency_examples=50)
    return {variant: {"size_kib": r["size_bytes"] / 1024, "latency_ms_p50": r["latency_ms_p50"],
                      "accuracy": r["accuracy"], "agreement": r["agreement"]}
            for variant, r in report["variants"].items()}


def run_classify(path: str, config: DefectConfig, workspace: str) -> dict:
    """(a): trains the preset, scores it and the baseline on images 201-240."""
    work = os.path.join(workspace, "classify")
    summary, arrays = prepare(path, config, work, LABEL)
    classes = summary["classes"]
    config = apply_overrides(config, {"data.classes": classes})
    say(f"(a) examples per split: {summary['counts']}")
    say(f"(a) training {config.model.kind} at {config.model.image_size} px (at most "
        f"{config.train.epochs} epochs, {config.train.max_minutes} min)")
    batch = config.train.batch_size
    result = trainer.train_classifier(_batches(*arrays["train"], batch),
                                      _batches(*arrays["validation"], batch), config, log=say)
    x_eval, y_eval = arrays["eval"]
    start = time.perf_counter()
    predicted = result.model.predict(x_eval, batch_size=64, verbose=0).argmax(axis=1)
    infer_s = time.perf_counter() - start
    deep = evaluation.classification_report(y_eval, predicted, classes)
    say(f"(a) CNN accuracy {deep['accuracy']:.4f}")
    base = classify_baseline(arrays["train"], arrays["validation"], arrays["eval"], classes)
    say(f"(a) baseline accuracy {base['accuracy']:.4f}")
    edge = tflite_figures(result.model, arrays["train"][0], x_eval, y_eval,
                          os.path.join(work, "tflite"))
    from blocks.vision.explanation import explain_grad_cam  # noqa: PLC0415

    heat = explain_grad_cam(models.explained_classifier(result.model), x_eval, predicted,
                            models.FEATURES)
    boxes = heat_figures(heat, arrays["boxes"], range(len(y_eval)))
    epochs = len(result.history)
    return {"data": os.path.abspath(path), "counts": summary["counts"], "classes": classes,
            "config": to_dict(config), "deep": deep, "baseline": base, "tflite": edge,
            "validation": result.validation, "best_epoch": result.best_epoch,
            "epochs_run": epochs, "train_s": result.train_seconds,
            "train_images": result.train_images,
            "train_images_per_s": result.train_images * epochs / result.train_seconds,
            "inference_images_per_s": len(y_eval) / infer_s, "grad_cam_boxes": boxes,
            "history": result.history}


# --------------------------------------------------------------------------------------
# (b) anomaly


def pca_baseline(train: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Reconstruction error on 64 x 64 pixels of a PCA of the good training images (the
    components explaining 95 % of their variance)."""
    import tensorflow as tf  # noqa: PLC0415
    from sklearn.decomposition import PCA  # noqa: PLC0415

    def pixels(a):
        return tf.image.resize(a, [64, 64], antialias=True).numpy().reshape(len(a), -1)

    pca = PCA(n_components=0.95, svd_solver="full").fit(pixels(train))
    p = pixels(x)
    return np.mean((p - pca.inverse_transform(pca.transform(p))) ** 2, axis=1)


def run_anomaly(path: str, config: DefectConfig, good: str, workspace: str,
                compare_autoencoder: bool) -> dict:
    """(b) for one good class: the app's anomaly model and the PCA baseline on 201-240."""
    work = os.path.join(workspace, "anomaly", good)
    config = apply_overrides(config, {"data.good_classes": [good]})
    summary, arrays = prepare(path, config, work, IS_DEFECT)
    say(f"(b) {good} is good: examples per split {summary['counts']}")
    x_train, y_train = arrays["train"]
    x_eval, y_eval = arrays["eval"]
    runs = {"app": config}
    if compare_autoencoder:
        runs["autoencoder"] = apply_overrides(config, {"anomaly.method": "autoencoder"})
    out = {"good": good, "counts": summary["counts"]}
    for name, run_config in runs.items():
        start = time.perf_counter()
        result = trainer.train_anomaly(_batches(x_train, y_train, 32),
                                       _batches(*arrays["validation"], 32), run_config,
                                       log=say)
        seconds = time.perf_counter() - start
        parts = models.anomaly_parts(result.model, x_eval)
        report = evaluation.detection_report(y_eval, parts["score"], result.threshold)
        excess = np.clip(parts["map"] - result.map_reference, 0.0, None)
        report["map_boxes"] = heat_figures(excess, arrays["boxes"], np.flatnonzero(y_eval))
        has_global = not np.isnan(parts["global"]).any()
        report.update(auroc_local=roc_auc(y_eval, parts["local"]),
                      auroc_global=(roc_auc(y_eval, parts["global"]) if has_global
                                    else float("nan")),
                      rule=result.rule, train_s=seconds,
                      validation_auroc=result.validation["auroc"])
        out[name] = report
        say(f"(b) {good}: {name} AUROC {report['auroc']:.4f} (local "
            f"{report['auroc_local']:.4f}, texture {_pct(report['auroc_global'])})")
    out["pca"] = {"auroc": roc_auc(y_eval, pca_baseline(x_train, x_eval))}
    say(f"(b) {good}: PCA baseline AUROC {out['pca']['auroc']:.4f}")
    return out


# --------------------------------------------------------------------------------------
# Report


def _pct(value: float) -> str:
    return f"{value:.4f}" if value == value else "  -   "


def print_classify(r: dict) -> None:
    """The classify table."""
    classes = r["classes"]
    print(f"\n(a) classify: NEU images 1-200 -> 201-240 ({r['counts']['eval']} eval images, "
          f"{r['train_images']} training images, {r['counts']['validation']} validation)")
    print(f"  training: {r['epochs_run']} epochs in {r['train_s'] / 60:.1f} min "
          f"({r['train_images_per_s']:.0f} images/s; best epoch {r['best_epoch']}); "
          f"inference {r['inference_images_per_s']:.0f} images/s")
    print(f"  {'':<22}{'accuracy':>10}")
    print(f"  {'CNN (' + r['config']['model']['kind'] + ')':<22}{r['deep']['accuracy']:>10.4f}")
    print(f"  {'baseline (LR, C=' + str(r['baseline']['C']) + ')':<22}"
          f"{r['baseline']['accuracy']:>10.4f}")
    print(f"  {'class':<18}{'recall':>8}{'precision':>11}{'base recall':>13}")
    for c in classes:
        print(f"  {c:<18}{_pct(r['deep']['recall'][c]):>8}{_pct(r['deep']['precision'][c]):>11}"
              f"{_pct(r['baseline']['recall'][c]):>13}")
    print("  confusion matrix (rows: true class, columns: predicted; order as above)")
    for row in r["deep"]["confusion_matrix"]:
        print("    " + " ".join(f"{v:4d}" for v in row))
    for variant, t in r["tflite"].items():
        print(f"  TFLite {variant:<8} {t['size_kib']:8.1f} KiB  p50 {t['latency_ms_p50']:.2f} "
              f"ms/image  accuracy {t['accuracy']:.4f}  agreement {t['agreement']:.4f}")
    b = r.get("grad_cam_boxes") or {}
    if b:
        print(f"  Grad-CAM: {b['heat_in_boxes']:.1%} of the heat inside the VOC boxes, which "
              f"cover {b['box_area']:.1%} of the image (lift {b['lift']:.2f}; "
              f"{b['images']} eval images)")
    met = r["deep"]["accuracy"] >= TARGETS["accuracy"]
    print(f"  target accuracy >= {TARGETS['accuracy']}: {'met' if met else 'NOT met'} "
          f"(published CNNs: {PUBLISHED_ACCURACY})")
    fast = r["train_s"] / 60 <= TARGETS["train_minutes"]
    print(f"  target training <= {TARGETS['train_minutes']:.0f} min: "
          f"{'met' if fast else 'NOT met'}")


def print_anomaly(results: list[dict]) -> None:
    """The anomaly table."""
    methods = [m for m in ("app", "autoencoder") if m in results[0]]
    print("\n(b) anomaly: one class good, the other five defects; NEU 201-240 (40 good, 200 "
          "defects)")
    header = "".join(f"{m + ' AUROC':>18}" for m in methods)
    print(f"  {'good class':<18}{header}{'PCA AUROC':>12}{'accuracy':>10}{'recall':>8}"
          f"{'false alarms':>14}")
    for r in results:
        a = r["app"]
        print(f"  {r['good']:<18}" + "".join(f"{r[m]['auroc']:>18.4f}" for m in methods)
              + f"{r['pca']['auroc']:>12.4f}{a['accuracy']:>10.4f}{a['recall']:>8.4f}"
              f"{a['false_alarm_rate']:>14.4f}")
    means = {m: float(np.mean([r[m]["auroc"] for r in results])) for m in methods + ["pca"]}
    print(f"  {'mean':<18}" + "".join(f"{means[m]:>18.4f}" for m in methods)
          + f"{means['pca']:>12.4f}")
    print("  app terms: " + ", ".join(
        f"{r['good']} local {r['app']['auroc_local']:.3f} texture "
        f"{_pct(r['app']['auroc_global'])}"
        for r in results))
    for r in results:
        b = r["app"].get("map_boxes") or {}
        if b:
            print(f"  anomaly map, {r['good']} good: {b['heat_in_boxes']:.1%} of the excess "
                  f"heat inside the defects' VOC boxes, which cover {b['box_area']:.1%} "
                  f"(lift {b['lift']:.2f}; {b['images']} defect images)")
    met = means["app"] >= TARGETS["mean_auroc"]
    print(f"  target mean AUROC >= {TARGETS['mean_auroc']}: {'met' if met else 'NOT met'}")


def parse_args(argv):
    """The command line of the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=NEU, metavar="DIR",
                        help="NEU images folder (<class>_<number>.jpg)")
    parser.add_argument("--only", choices=["classify", "anomaly"])
    parser.add_argument("--minutes", type=float, default=20.0,
                        help="training time budget of (a) (default: 20)")
    parser.add_argument("--good", nargs="+", metavar="CLASS",
                        help="(b): these good classes only (default: all six)")
    parser.add_argument("--compare-autoencoder", action="store_true",
                        help="(b): also the convolutional autoencoder method")
    common.add_output_arguments(parser, DEFAULT_WORKSPACE, overrides="the runs")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Runs the benchmarks, prints the tables; 0 when every target is met."""
    args = parse_args(argv)
    workspace = os.path.abspath(args.workspace)
    start = time.perf_counter()
    neu = {"data.format": "prefix", "data.eval_indices": [201, 240],
           "data.use_indices": [1, 240]}
    results: dict = {}
    met = True
    if args.only in (None, "classify"):
        config = apply_overrides(DefectConfig.preset("default"),
                                 {**neu, "train.max_minutes": args.minutes}, args.set).check()
        results["classify"] = run_classify(args.data, config, workspace)
        met &= results["classify"]["deep"]["accuracy"] >= TARGETS["accuracy"]
    if args.only in (None, "anomaly"):
        config = apply_overrides(with_mode(DefectConfig.preset("default"), "anomaly"), neu,
                                 args.set).check()
        goods = args.good or ["crazing", "inclusion", "patches", "pitted_surface",
                              "rolled-in_scale", "scratches"]
        results["anomaly"] = [run_anomaly(args.data, config, good, workspace,
                                          args.compare_autoencoder) for good in goods]
        met &= float(np.mean([r["app"]["auroc"] for r in results["anomaly"]])) \
            >= TARGETS["mean_auroc"]
    if "classify" in results:
        print_classify(results["classify"])
    if "anomaly" in results:
        print_anomaly(results["anomaly"])
    common.finish(results, time.perf_counter() - start, args.out)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
