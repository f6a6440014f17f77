"""Benchmark of the medical-scans app on real data (../shared/datasets/medical).

Trains the preset without TFX (data.ingest -> local TFT analysis -> trainer.train, the same
code the pipeline runs) and scores it on data the model never saw, beside a baseline
computed in the same run: a logistic regression on the same decoded images downsampled to
``BASELINE_PX`` pixels, with its own threshold chosen on the same validation split.

  (a) chest_xray: the official train folder, 15% of the patients of each class held out as
      the eval split (person ids from the file names; a NORMAL file without one is its own
      patient), 10% of the remaining patients as the validation split (threshold, best
      epoch); the default preset.
  (c) chest_xray, acquisition batches held out: a proxy for the official test split, which
      comes from other (earlier) acquisition batches and is never used here. From the same
      train folder, the lowest ``--holdout-fraction`` (0.25) of the scan ids of each normal
      series (the number after ``IM-`` in ``IM-<id>-...`` and in ``NORMAL2-IM-<id>-...``) and
      the lowest same fraction of the pneumonia person ids (``person<id>_...``) are the eval
      split, everything else is training data (the app carves its validation split from the
      training patients, as in (a)). The app is not changed: the benchmark links the files
      into ``<workspace>/c/layout/{train,test}/{NORMAL,PNEUMONIA}/`` (symbolic links) and
      ingests that folder, whose ``test/`` the app takes as the eval split. The report prints
      each side's id ranges, and the ingestion's count of patients on both sides (0). The
      default preset, no TFLite figures. There is no target: it is a proxy; the report gives
      the drop of AUC and specificity from (a) to (c) (note that (c) also trains on fewer
      images).
  (b) PneumoniaMNIST: train (validation carved by image) -> the official val arrays.

For each: AUC, accuracy, sensitivity, specificity, precision at the model's threshold, the
specificity at 95% sensitivity (the best one on the eval ROC among thresholds that reach it:
what a screening operating point would give), training time and throughput, inference
throughput, and for (a) and (b) the TFLite float32 / int8 size, single-image latency and AUC
(the AUC drop of int8).

Perturbation sweep, (a) and (c): the eval images, decoded to [0, 1] as the model takes them,
changed by one perturbation at a time (``SWEEP``: contrast about each image's mean, gamma,
Gaussian blur and Gaussian noise in model-input pixels / intensity units, lower resolution
(down- then up-sampled), centre crop resized back, rotation with reflected borders as the
training augmentation fills them), results clipped to [0, 1]. Per level: the model's AUC,
sensitivity, specificity at its own threshold and specificity at 95% sensitivity, and the
baseline's AUC.

    .venv/bin/python benchmarks/medical_scans.py [--chest-xray DIR] [--npz FILE]
        [--minutes-a 30] [--minutes-c 30] [--minutes-b 10] [--holdout-fraction 0.25]
        [--only a|b|c|a,c|...] [--set FIELD=JSON] [--workspace DIR] [--out FILE]

Exit status 0 when every target of the runs that ran is met ((a) and (b); (c) has none).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time

import suite  # noqa: F401  (Keras policy before TensorFlow)
from suite.quiet import quiet

import common  # noqa: E402  (benchmarks/common.py)

quiet()  # before TensorFlow loads, so the stack's known noise stays out of the report

import numpy as np  # noqa: E402

from apps.medical_scans import data, decision as decisions, evaluation, preprocessing, trainer  # noqa: E402,E501
from apps.base.cli import apply_overrides  # noqa: E402
from apps.medical_scans.config import MedicalConfig  # noqa: E402
from apps.medical_scans.features import IMAGE_XF, LABEL, SPLITS  # noqa: E402
from suite import examples_io  # noqa: E402
from suite.metrics import decision_threshold, roc_auc, specificity_at_sensitivity  # noqa: E402,E501
from suite.progress import say  # noqa: E402
from suite.config import to_dict  # noqa: E402

DATASETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                        "datasets", "medical")
DEFAULT_WORKSPACE = os.path.join("workspace", "benchmarks", "medical_scans")
BASELINE_PX = 32
RUNS = ("a", "c", "b")  # in report order
NAMES = {"a": "(a) chest_xray, patient split", "c": "(c) chest_xray, batches held out",
         "b": "(b) PneumoniaMNIST train -> val"}
TARGETS = {"a": {"auc": 0.97, "accuracy": 0.93}, "b": {"auc": 0.97}}  # (c): a proxy, none
HOLDOUT_FRACTION = 0.25
# Acquisition series of the chest_xray file names: group 1 the series, group 2 the id.
SERIES_NAMES = {"NORMAL": re.compile(r"^(NORMAL2-IM|IM)-(\d+)-"),
                "PNEUMONIA": re.compile(r"^(person)(\d+)_")}
# Perturbation -> levels (see ``perturb``). The training augmentation covers gamma
# exp(+-0.25), rotations up to ~11 degrees and zoom +-10%; the outer levels go beyond it.
SWEEP = {
    "contrast": (0.5, 0.75, 1.5),  # factor about each image's mean intensity
    "gamma": (0.5, 0.75, 1.5),  # images ** gamma (< 1 brighter, > 1 darker)
    "blur": (1.0, 2.0),  # Gaussian sigma, model-input pixels
    "noise": (0.02, 0.05, 0.1),  # Gaussian standard deviation, intensity units
    "resolution": (2, 4),  # down-sampled by this factor, then up-sampled back
    "crop": (0.9, 0.8),  # centre crop keeping this share of the side, resized back
    "rotation": (5, 10, 15),  # degrees
}
SPEC_TARGET = 0.95  # sensitivity of the screening operating point
METRICS = ("auc", "accuracy", "sensitivity", "specificity", "spec_at_95_sens", "threshold")


def _report(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """``evaluation.binary_report`` and the specificity at 95% sensitivity."""
    return {**evaluation.binary_report(labels, scores, threshold),
            "spec_at_95_sens": specificity_at_sensitivity(labels, scores, SPEC_TARGET)}


def _files(examples_dir: str, split: str) -> list[str]:
    return [os.path.join(examples_dir, split, "data.tfrecord")]


def _arrays(dataset) -> tuple[np.ndarray, np.ndarray]:
    """All (images, labels) of a transformed dataset as numpy arrays."""
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in dataset], strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def fit_baseline(train, validation):
    """Logistic regression on downsampled pixels, its threshold chosen on validation: returns
    (score: images -> positive probabilities, threshold, fit seconds)."""
    import tensorflow as tf
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(
        C=0.01, max_iter=3000, class_weight="balanced"))

    def score(x: np.ndarray) -> np.ndarray:
        small = tf.image.resize(x, [BASELINE_PX, BASELINE_PX], antialias=True).numpy()
        return model.predict_proba(small.reshape(len(x), -1))[:, 1]

    start = time.perf_counter()
    small = tf.image.resize(train[0], [BASELINE_PX, BASELINE_PX], antialias=True).numpy()
    model.fit(small.reshape(len(small), -1), train[1])
    fit_s = time.perf_counter() - start
    threshold = 0.5
    if len(validation[1]):
        threshold = evaluation.choose_threshold(validation[1], score(validation[0]))
    return score, threshold, fit_s


def perturb(images: np.ndarray, kind: str, level: float, seed: int = 0) -> np.ndarray:
    """``images`` [N, H, W, C] in [0, 1] changed by one perturbation of ``SWEEP`` at
    ``level`` (``kind`` "none" returns them unchanged), clipped to [0, 1], float32."""
    import tensorflow as tf
    from scipy import ndimage

    if kind == "none":
        return images
    side = images.shape[1]

    def resize(x, size):
        return tf.image.resize(x, [size, size], antialias=True).numpy()

    table = {
        "contrast": lambda x: x.mean(axis=(1, 2, 3), keepdims=True) * (1 - level) + level * x,
        "gamma": lambda x: np.power(x, level),
        "blur": lambda x: ndimage.gaussian_filter(x, (0, level, level, 0)),
        "noise": lambda x: x + level * np.random.default_rng(seed).standard_normal(
            x.shape, dtype=np.float32),
        "resolution": lambda x: resize(resize(x, max(1, round(side / level))), side),
        "crop": lambda x: resize(tf.image.central_crop(x, level), side),
        # Reflected borders, as the training augmentation's RandomRotation fills them.
        "rotation": lambda x: ndimage.rotate(x, level, axes=(1, 2), reshape=False, order=1,
                                             mode="reflect"),
    }
    if kind not in table:
        raise ValueError(f"perturbation {kind!r}: expected 'none' or one of {list(table)}")
    return np.clip(table[kind](images), 0.0, 1.0).astype(np.float32)


def perturbation_sweep(model, threshold: float, base_score, x: np.ndarray, y: np.ndarray,
                       rule_thresholds: dict[str, float]) -> list[dict]:
    """Every level of ``SWEEP`` (and "none") on the eval images: the model's figures at its
    threshold, its specificity at 95% sensitivity, the baseline's AUC, and (sensitivity,
    specificity) at each rule's threshold."""
    rows = []
    for kind, level in [("none", None)] + [(k, v) for k, vs in SWEEP.items() for v in vs]:
        images = perturb(x, kind, level)
        scores = model.predict(images, batch_size=64, verbose=0)[:, 1]
        report = _report(y, scores, threshold)
        at_rules = {}
        for label, t in rule_thresholds.items():
            r = evaluation.binary_report(y, scores, t)
            at_rules[label] = [r["sensitivity"], r["specificity"]]
        rows.append({"perturbation": kind, "level": level,
                     **{m: report[m] for m in ("auc", "accuracy", "sensitivity",
                                               "specificity", "spec_at_95_sens")},
                     "baseline_auc": roc_auc(y, base_score(images)), "rules": at_rules})
    return rows


def rules_held(sweep: list[dict], sensitivity: float = 0.95, specificity: float = 0.80
               ) -> dict[str, dict]:
    """Per rule: on how many sweep levels its threshold keeps sensitivity >= 0.95 and
    specificity >= 0.80 (the issue's operating point), and its mean specificity."""
    return {label: {"held": sum(row["rules"][label][0] >= sensitivity
                                and row["rules"][label][1] >= specificity for row in sweep),
                    "levels": len(sweep),
                    "mean_specificity": float(np.mean([row["rules"][label][1]
                                                       for row in sweep]))}
            for label in sweep[0]["rules"]}


def batch_holdout_layout(source: str, dest: str, fraction: float) -> dict:
    """Links the chest_xray train folder ``source`` ({NORMAL,PNEUMONIA}/) into
    ``dest/{train,test}/{NORMAL,PNEUMONIA}/`` (symbolic links, ``dest`` rebuilt): per
    acquisition series (``SERIES_NAMES``: IM, NORMAL2-IM, person) the files of the lowest
    ``fraction`` of its distinct ids go to test/, the others to train/. Returns per series
    the id range, id count and file count of each side."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"--holdout-fraction: expected a share in (0, 1), got {fraction}")
    series: dict[str, tuple[str, dict[int, list[str]]]] = {}  # name -> (class, id -> files)
    for cls, pattern in SERIES_NAMES.items():
        folder = os.path.join(source, cls)
        if not os.path.isdir(folder):
            raise ValueError(f"{folder}: no such folder; expected the chest_xray train folder "
                             f"with class folders {list(SERIES_NAMES)}")
        for name in sorted(os.listdir(folder)):
            if not name.lower().endswith((".jpeg", ".jpg", ".png")):
                continue
            match = pattern.match(name)
            if match is None:
                raise ValueError(f"{os.path.join(folder, name)}: file name without an "
                                 f"acquisition id; expected it to match {pattern.pattern}")
            ids = series.setdefault(match.group(1), (cls, {}))[1]
            ids.setdefault(int(match.group(2)), []).append(name)
    shutil.rmtree(dest, ignore_errors=True)
    figures = {}
    for name, (cls, ids) in sorted(series.items()):
        ordered = sorted(ids)
        if len(ordered) < 2:
            raise ValueError(f"{os.path.join(source, cls)}: series {name} has "
                             f"{len(ordered)} id(s); expected at least 2 to hold some out")
        k = min(len(ordered) - 1, max(1, round(fraction * len(ordered))))
        sides = {"eval": ordered[:k], "train": ordered[k:]}
        for side, chosen in sides.items():
            folder = os.path.join(dest, "test" if side == "eval" else "train", cls)
            os.makedirs(folder, exist_ok=True)
            for i in chosen:
                for file in ids[i]:
                    os.symlink(os.path.abspath(os.path.join(source, cls, file)),
                               os.path.join(folder, file))
        figures[name] = {"class": cls, **{
            side: {"ids": [chosen[0], chosen[-1]], "n_ids": len(chosen),
                   "files": sum(len(ids[i]) for i in chosen)}
            for side, chosen in sides.items()}}
    return {"fraction": fraction, "layout": dest, "series": figures}


def _holdout_lines(holdout: dict) -> list[str]:
    lines = []
    for name, s in holdout["series"].items():
        e, t = s["eval"], s["train"]
        lines.append(f"{name + ' (' + s['class'] + ')':<22} eval ids {e['ids'][0]:>4}-"
                     f"{e['ids'][1]:<4} ({e['n_ids']} ids, {e['files']} files)   train ids "
                     f"{t['ids'][0]:>4}-{t['ids'][1]:<4} ({t['n_ids']} ids, {t['files']} files)")
    return lines


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


def run_dataset(key: str, path: str, config: MedicalConfig, workspace: str, *,
                edge: bool = True, sweep: bool = False) -> dict:
    """Ingests, trains and scores one data set; returns its figures (with ``edge`` the
    TFLite ones, with ``sweep`` the perturbation sweep)."""
    from components import transform_local

    work = os.path.join(workspace, key)
    say(f"({key}) ingesting {path}")
    ingested = data.ingest(path, config.data, os.path.join(work, "examples"), progress=say)
    summary = ingested.summary
    counts = summary["counts"]
    say(f"({key}) examples per split: {counts}; patients per split: {summary['patients']}; "
        f"patients in train or validation and eval: {summary['patients_in_train_and_eval']}")
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
    deep = _report(y_eval, scores, result.threshold)
    say(f"({key}) deep model: " + _line(deep))
    say(f"({key}) fitting the baseline")
    train_arrays = _arrays(train_ds)
    base_score, base_threshold, fit_s = fit_baseline(train_arrays, _arrays(validation_ds))
    base = {**_report(y_eval, base_score(x_eval), base_threshold), "fit_s": fit_s}
    say(f"({key}) baseline: " + _line(base))
    say(f"({key}) threshold rules, site calibration, refer bands, out-of-distribution check")
    x_val, y_val = _arrays(validation_ds)
    decided = decision_figures(result, config, x_val, y_val, x_eval, y_eval, scores)
    figures = {
        "data": os.path.abspath(path), "counts": counts,
        "class_counts": summary["class_counts"], "patients": summary["patients"],
        "patients_in_train_and_eval": summary["patients_in_train_and_eval"],
        "config": to_dict(config), "deep": deep, "baseline": base,
        "validation": result.validation, "best_epoch": result.best_epoch,
        "epochs_run": epochs, "train_s": result.train_seconds,
        "train_images": result.train_images,
        "train_images_per_s": result.train_images * epochs / result.train_seconds,
        "inference_images_per_s": len(y_eval) / infer_s,
        "history": result.history, "decision": decided,
    }
    if edge:
        say(f"({key}) TFLite float32 and int8")
        figures["tflite"] = tflite_figures(result.model, train_arrays[0], x_eval, y_eval,
                                           os.path.join(work, "tflite"))
    if sweep:
        say(f"({key}) perturbation sweep on {len(y_eval)} eval images")
        figures["sweep"] = perturbation_sweep(
            result.model, result.threshold, base_score, x_eval, y_eval,
            {label: r["threshold"] for label, r in decided["rules"].items()})
        figures["rules_held"] = rules_held(figures["sweep"])
    return figures


# Threshold rules compared on every run: (label, rule, target, margin); chosen on the
# validation split, scored on eval.
RULES = (("youden", "youden", 0.95, 0.0), ("sens>=0.95", "sensitivity", 0.95, 0.0),
         ("sens>=0.95+0.02", "sensitivity", 0.95, 0.02),
         ("sens>=0.95+0.04", "sensitivity", 0.95, 0.04),
         ("spec>=0.90", "specificity", 0.90, 0.0))
REFER_BANDS = (0.5, 1.0)  # refer band half-widths (logits) reported
NEU = os.path.join(DATASETS, "..", "defects", "neu_surface_defects", "images")


def _features(model, x: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    batches = tf.data.Dataset.from_tensor_slices((x, np.zeros(len(x)))).batch(64)
    return trainer.pooled_features(model, batches)


def non_chest_images(size: int, channels: int) -> dict[str, np.ndarray]:
    """Images that are not chest radiographs, decoded to the model's input as served
    (encoded, then ``decode_images``): generated blank, noise and pattern images; real
    steel-surface photographs (NEU, 20 per class) when the data set is there; and every
    grayscale image in pydicom's test files that is not a radiograph (CT, MR, ...),
    converted as ingestion converts DICOM (its modality check turned off, so that the
    out-of-distribution score itself is measured)."""
    import glob
    import logging
    import warnings

    import pydicom
    import tensorflow as tf
    from pydicom.data import get_testdata_file

    from blocks.vision.decode import decode_images
    from blocks.vision.dicom import encode_png, read_dicom

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    sets = {
        "blank": [np.full((size, size), v, np.uint8) for v in np.linspace(0, 255, 20)],
        "noise": [rng.integers(0, 256, (size, size), dtype=np.uint8) for _ in range(20)],
        "patterns": [((np.sin(2 * np.pi * f * (xx * np.cos(a) + yy * np.sin(a))) + 1) * 127.5
                      ).astype(np.uint8) for f, a in zip(rng.uniform(2, 12, 20),
                                                         rng.uniform(0, np.pi, 20),
                                                         strict=True)],
    }
    neu = sorted(glob.glob(os.path.join(NEU, "*.jpg")))
    if neu:
        by_class: dict[str, list[str]] = {}
        for path in neu:
            by_class.setdefault(os.path.basename(path).rsplit("_", 1)[0], []).append(path)
        sets["NEU steel photos"] = [open(p, "rb").read() for c in sorted(by_class)
                                    for p in by_class[c][:20]]
    dicoms = []
    logging.disable(logging.ERROR)  # pydicom logs every odd test file it cannot decode
    warnings.filterwarnings("ignore", module="pydicom")
    test_files = os.path.dirname(get_testdata_file("CT_small.dcm"))
    for path in sorted(glob.glob(os.path.join(test_files, "*.dcm"))):
        try:
            if str(pydicom.dcmread(path, stop_before_pixels=True).get("Modality", "")) in (
                    "CR", "DX"):
                continue
            dicoms.append(encode_png(read_dicom(path)[0]))
        except Exception:  # noqa: BLE001  (many of them are deliberately odd or damaged)
            continue
    logging.disable(logging.NOTSET)
    sets["pydicom CT/MR/... files"] = dicoms
    out = {}
    for name, images in sets.items():
        encoded = [i if isinstance(i, bytes) else encode_png(i) for i in images]
        if encoded:
            out[name] = decode_images(tf.constant(encoded), size, channels).numpy()
    return out


def decision_figures(result, config: MedicalConfig, x_val, y_val, x_eval, y_eval,
                     eval_scores) -> dict:
    """On one run: every threshold rule (chosen on validation, scored on eval); the site
    calibration from the eval images unlabelled (EM prevalence, then the fewest expected
    errors); the refer bands' share of eval images and the accuracy on the rest; and the
    out-of-distribution check: eval chest images referred, and the share of each set of
    non-chest images caught."""
    val_scores = result.model.predict(x_val, batch_size=64, verbose=0)[:, 1]
    rules = {label: _report(y_eval, eval_scores,
                            decision_threshold(y_val, val_scores, rule, target, margin))
             for label, rule, target, margin in RULES}
    calibration = result.calibration
    prevalence = decisions.em_prevalence(decisions.posterior(eval_scores, calibration),
                                         calibration["prevalence"])
    site_t = decisions.prevalence_threshold(calibration, prevalence)
    site = {"true_prevalence": float(np.mean(y_eval)), "estimated_prevalence": prevalence,
            "validation_prevalence": calibration["prevalence"],
            **_report(y_eval, eval_scores, site_t)}
    refer = {}
    for width in REFER_BANDS:
        low, high = decisions.refer_band(result.threshold, width)
        inside = (eval_scores >= low) & (eval_scores < high)
        kept = ~inside
        refer[width] = {"referred": float(inside.mean()), "low": low, "high": high,
                        "accuracy_rest": float(np.mean(
                            (eval_scores[kept] >= result.threshold) == y_eval[kept]))}
    ood = {}
    if result.decision.ood is not None:
        o = result.decision.ood
        m = config.model
        ood = {"limit": o.limit,
               "validation_referred": float(np.mean(
                   o.distance(_features(result.model, x_val)) > o.limit)),
               "eval_referred": float(np.mean(o.distance(_features(result.model, x_eval))
                                              > o.limit)),
               "caught": {name: {"n": len(x), "caught": float(np.mean(
                   o.distance(_features(result.model, x)) > o.limit))}
                   for name, x in non_chest_images(m.image_size, m.channels).items()}}
    return {"rules": rules, "site": site, "refer": refer, "ood": ood}


def _line(report: dict) -> str:
    return "  ".join(f"{k} {report[k]:.4f}" for k in
                     ("auc", "accuracy", "sensitivity", "specificity", "spec_at_95_sens",
                      "precision", "threshold"))


def shift_figures(results: dict) -> dict:
    """In-distribution (a) minus batch-held-out (c) figures of the model and the baseline;
    empty unless both ran."""
    if "a" not in results or "c" not in results:
        return {}
    return {model: {m: {"a": results["a"][model][m], "c": results["c"][model][m],
                        "drop": results["a"][model][m] - results["c"][model][m]}
                    for m in ("auc", "specificity", "spec_at_95_sens", "sensitivity")}
            for model in ("deep", "baseline")}


def print_report(results: dict, shift: dict) -> None:
    """One table of every run's model and baseline, then TFLite, targets, the (c) split, the
    shift proxy and the perturbation sweeps."""
    models = (("CNN", "deep"), (f"baseline (LR, {BASELINE_PX} px)", "baseline"))
    print()
    for key, r in results.items():
        eval_classes = ", ".join(f"{n} {c}" for c, n in r["class_counts"]["eval"].items())
        print(f"{NAMES[key]}: train {r['counts']['train']} / validation "
              f"{r['counts']['validation']} / eval {r['counts']['eval']} images (eval "
              f"{eval_classes}); {r['epochs_run']} epochs in {r['train_s'] / 60:.1f} min "
              f"({r['train_images_per_s']:.0f} images/s; best epoch {r['best_epoch']}), "
              f"inference {r['inference_images_per_s']:.0f} images/s")
    print()
    common.print_table(
        ["split", "model", "AUC", "accuracy", "sensitivity", "specificity", "spec@95%sens",
         "threshold"],
        [[NAMES[key], label, *(common.fmt(r[field][m]) for m in METRICS)]
         for key, r in results.items() for label, field in models])
    if any("tflite" in r or key in TARGETS for key, r in results.items()):
        print()
    for key, r in results.items():
        for variant, t in r.get("tflite", {}).items():
            print(f"{NAMES[key][:3]} TFLite {variant:<8} {t['size_kib']:9.1f} KiB  p50 "
                  f"{t['latency_ms_p50']:.2f} ms/image  AUC {t['auc']:.4f} (drop "
                  f"{r['deep']['auc'] - t['auc']:+.4f})  agreement {t['agreement']:.4f}")
    for key, r in results.items():
        for metric, target in TARGETS.get(key, {}).items():
            value = r["deep"][metric]
            print(f"{NAMES[key][:3]} target {metric} >= {target}: {value:.4f} "
                  f"{'met' if value >= target else 'NOT met'}")
    print("\nthreshold rules (chosen on each run's validation split, scored on its eval "
          "split), and the site calibration from the eval images unlabelled:")
    rows = []
    for key, r in results.items():
        for label, report in r["decision"]["rules"].items():
            rows.append([NAMES[key][:3], f"CNN, {label}", *(common.fmt(report[m])
                                                           for m in METRICS)])
        site = r["decision"]["site"]
        rows.append([NAMES[key][:3], f"CNN, site prevalence {site['estimated_prevalence']:.3f} "
                     f"(true {site['true_prevalence']:.3f})",
                     *(common.fmt(site[m]) for m in METRICS)])
    common.print_table(["run", "decision", "AUC", "accuracy", "sensitivity", "specificity",
                        "spec@95%sens", "threshold"], rows)
    print("\nrefer band (half-width in logits around the threshold): share of eval images "
          "referred, accuracy on the rest:")
    for key, r in results.items():
        print(f"  {NAMES[key][:3]} " + "   ".join(
            f"{w:g}: [{b['low']:.3f}, {b['high']:.3f}) referred {b['referred']:.1%}, "
            f"accuracy {b['accuracy_rest']:.4f}" for w, b in r["decision"]["refer"].items()))
    print("\nout-of-distribution check (squared Mahalanobis distance of the pooled features; "
          "limit: a quantile of the validation images'):")
    for key, r in results.items():
        o = r["decision"]["ood"]
        if not o:
            continue
        print(f"  {NAMES[key][:3]} limit {o['limit']:.1f}: chest X-rays referred: "
              f"validation {o['validation_referred']:.1%}, eval {o['eval_referred']:.1%}; "
              "caught: " + ", ".join(
                  f"{name} {c['caught']:.0%} of {c['n']}" for name, c in o["caught"].items()))
    if "c" in results:
        c = results["c"]
        print(f"\n(c) acquisition batches held out (lowest {c['holdout']['fraction']:.0%} of "
              "the ids of each series as eval):")
        for line in _holdout_lines(c["holdout"]):
            print(f"  {line}")
        print(f"  patients (ingestion's grouping) in both train/validation and eval: "
              f"{c['patients_in_train_and_eval']}")
    if shift:
        print("\nshift proxy, (a) in-distribution -> (c) batches held out (no target; (c) "
              "also trains on fewer images):")
        for label, field in models:
            print(f"  {label:<22} " + "   ".join(
                f"{m} {s['a']:.4f} -> {s['c']:.4f} (drop {s['drop']:+.4f})"
                for m, s in shift[field].items() if m != "sensitivity"))
    for key, r in results.items():
        if "sweep" not in r:
            continue
        print(f"\nperturbation sweep, {NAMES[key]} (CNN at its threshold "
              f"{r['deep']['threshold']:.4f}; baseline AUC):")
        clean = r["sweep"][0]
        common.print_table(
            ["perturbation", "level", "AUC", "dAUC", "sensitivity", "specificity",
             "spec@95%sens", "baseline AUC"],
            [[s["perturbation"], "-" if s["level"] is None else f"{s['level']:g}",
              common.fmt(s["auc"]), f"{s['auc'] - clean['auc']:+.4f}",
              common.fmt(s["sensitivity"]), common.fmt(s["specificity"]),
              common.fmt(s["spec_at_95_sens"]), common.fmt(s["baseline_auc"])]
             for s in r["sweep"]])
        print("  threshold rules on the sweep: levels where sensitivity >= 0.95 and "
              "specificity >= 0.80 hold, mean specificity")
        for label, h in r["rules_held"].items():
            print(f"    {label:<18} {h['held']:>2} of {h['levels']}   "
                  f"{h['mean_specificity']:.4f}")


def _only(value: str) -> tuple[str, ...]:
    keys = tuple(dict.fromkeys(k.strip() for k in value.split(",") if k.strip()))
    if not keys or any(k not in RUNS for k in keys):
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(sorted(RUNS))} or a "
                                         f"comma-separated combination (a,c), got {value!r}")
    return keys


def parse_args(argv):
    """The command line of the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chest-xray", default=os.path.join(DATASETS, "chest_xray", "train"),
                        metavar="DIR", help="class folders NORMAL/ and PNEUMONIA/")
    parser.add_argument("--npz", default=os.path.join(DATASETS, "pneumoniamnist_trainval.npz"),
                        metavar="FILE", help="PneumoniaMNIST arrays")
    parser.add_argument("--only", type=_only, default=RUNS, metavar="a|b|c|a,c",
                        help="run these data sets only (comma-separated)")
    parser.add_argument("--minutes-a", type=float, default=30.0,
                        help="training time budget for (a) (default: 30)")
    parser.add_argument("--minutes-c", type=float, default=30.0,
                        help="training time budget for (c) (default: 30)")
    parser.add_argument("--minutes-b", type=float, default=10.0,
                        help="training time budget for (b) (default: 10)")
    parser.add_argument("--holdout-fraction", type=float, default=HOLDOUT_FRACTION,
                        help="(c): share of the lowest ids of each acquisition series held "
                             f"out as eval (default: {HOLDOUT_FRACTION})")
    common.add_output_arguments(parser, DEFAULT_WORKSPACE, overrides="every run")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Runs the data sets, prints the tables; 0 when every target is met."""
    args = parse_args(argv)
    workspace = os.path.abspath(args.workspace)
    start = time.perf_counter()
    base = MedicalConfig.preset("default")

    def chest_xray(minutes: float) -> MedicalConfig:
        # The default preset, as the pipeline would run it on this folder.
        return apply_overrides(base, {"train.max_minutes": minutes}, args.set)

    results = {}
    for key in (k for k in RUNS if k in args.only):
        if key == "a":
            results[key] = run_dataset(key, args.chest_xray, chest_xray(args.minutes_a),
                                       workspace, sweep=True)
        elif key == "c":
            holdout = batch_holdout_layout(args.chest_xray,
                                           os.path.join(workspace, "c", "layout"),
                                           args.holdout_fraction)
            for line in _holdout_lines(holdout):
                say(f"(c) {line}")
            results[key] = {"holdout": holdout, **run_dataset(
                key, holdout["layout"], chest_xray(args.minutes_c), workspace, edge=False,
                sweep=True)}
        else:
            # 28 px arrays: 64 px input (upsampled) and no file-name patients or subtypes.
            config = apply_overrides(base, {
                "data.format": "npz", "data.subtype_pattern": "", "model.image_size": 64,
                "train.max_minutes": args.minutes_b}, args.set)
            results[key] = run_dataset(key, args.npz, config, workspace)
    shift = shift_figures(results)
    print_report(results, shift)
    common.finish({**results, **({"shift": shift} if shift else {})},
                  time.perf_counter() - start, args.out)
    met = all(results[k]["deep"][m] >= t for k in results
              for m, t in TARGETS.get(k, {}).items())
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
