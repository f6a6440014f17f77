"""The defect-images app, declared: surface defects in camera images, classified (known,
labelled defect classes) or detected as anomalies (a model of good parts only)."""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any

from apps.base.app import App, Progress
from apps.defect_images.config import (
    ANOMALY_METHODS, FORMATS, MODEL_KINDS, MODEL_NAMES, MODES, DefectConfig, parse_range)
from apps.defect_images.features import IMAGE_XF, IS_DEFECT, LABEL, SPLITS


def _names(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


class DefectImages(App):
    """Class folders or class-prefixed file names (JPEG/PNG/BMP, optional VOC boxes) ->
    CNN / ResNet classifier, or an anomaly model of the good parts with its threshold."""

    name = "defect_images"
    command = "defect-images"
    about = ("surface defects in camera images (class folders, NEU-style names, VOC boxes): "
             "CNN / ResNet classes or anomaly detection, Grad-CAM / anomaly maps")
    headline_metric = ("sparse_categorical_accuracy", "accuracy")
    config_class = DefectConfig
    formats = FORMATS
    models = MODEL_KINDS
    modes = MODES
    data_metavar = "DIR"
    data_help = "image folder (default: generate demo images)"

    def add_config_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--classes", metavar="A,B,...",
                            help="the classes, in label order (default: every class found)")
        parser.add_argument("--good-classes", metavar="A,...",
                            help="anomaly mode: the good-part classes (default: those named "
                                 "ok*, good*, normal*, pass*)")
        parser.add_argument("--eval-indices", metavar="FIRST-LAST",
                            help="images whose file-name number lies in this range are the "
                                 "eval split, e.g. 201-240 (default: a test/ folder, else a "
                                 "stratified share of each class)")
        parser.add_argument("--use-indices", metavar="FIRST-LAST",
                            help="use only images whose file-name number lies in this range")
        parser.add_argument("--prefix-pattern", metavar="REGEX",
                            help="prefix format: regular expression on the file name without "
                                 "extension; group 1 is the class (default: '(.+?)_\\d+')")
        parser.add_argument("--annotations", metavar="DIR",
                            help="Pascal VOC XML folder (default: an annotations/ folder in "
                                 "or next to the data folder; '' for none)")
        parser.add_argument("--image-size", type=int, help="input resolution in pixels")
        parser.add_argument("--method", choices=ANOMALY_METHODS,
                            help="anomaly mode: Gaussian of CNN features (default) or a "
                                 "convolutional autoencoder")

    def overrides(self, args: argparse.Namespace) -> dict[str, Any]:
        def span(name: str, where: str):
            text = getattr(args, name, None)
            return list(parse_range(text, where)) if text else None

        return {
            "model_name": MODEL_NAMES[args.mode] if getattr(args, "mode", None) else None,
            "data.classes": _names(args.classes),
            "data.good_classes": _names(args.good_classes),
            "data.eval_indices": span("eval_indices", "--eval-indices"),
            "data.use_indices": span("use_indices", "--use-indices"),
            "data.prefix_pattern": args.prefix_pattern,
            "data.annotations": args.annotations,
            "model.image_size": args.image_size,
            "anomaly.method": args.method,
        }

    # -- data ------------------------------------------------------------------------------

    def demo_data(self, folder: str, config: DefectConfig, progress: Progress) -> str:
        from apps.defect_images import data

        fmt = config.data.format
        root = os.path.join(folder, f"surfaces-{fmt}")
        path = os.path.join(root, "images") if fmt == "prefix" else root
        if not os.path.exists(path):
            progress(f"no --data given: generating surface images ({fmt}) in {root}")
            data.generate_synthetic(root, fmt, n_per_class=40, size=64)
        return path

    def add_generate_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--classes", default="ok,scratch,spot",
                            help="class names (ok*/good*: clean; *spot*: dark blobs; others: "
                                 "scratches); default: %(default)s")
        parser.add_argument("--per-class", type=int, default=40)
        parser.add_argument("--size", type=int, default=64)
        parser.add_argument("--layout", choices=["flat", "train_test"], default="flat",
                            help="train_test: train/ and test/ folders (default: flat)")
        parser.add_argument("--no-voc", action="store_true",
                            help="write no Pascal VOC boxes for the defects")
        parser.add_argument("--rgb", action="store_true", help="write colour images")
        parser.add_argument("--extensions", default=".png",
                            help="file types to cycle through, e.g. .png,.jpg,.bmp")

    def generate(self, args: argparse.Namespace) -> str:
        from apps.defect_images import data

        return data.generate_synthetic(
            args.out, args.format, classes=_names(args.classes) or ["ok", "scratch"],
            n_per_class=args.per_class, size=args.size, seed=args.seed, layout=args.layout,
            voc=not args.no_voc, rgb=args.rgb, extensions=_names(args.extensions) or [".png"])

    def ingest(self, path: str, config: DefectConfig, out_root: str, progress: Progress):
        from apps.defect_images import data

        return data.ingest(path, config.data, out_root, progress, mode=config.mode)

    def with_ingested(self, config: DefectConfig, ingested) -> DefectConfig:
        summary = ingested.summary
        d = dataclasses.replace(config.data, classes=tuple(summary["classes"]),
                                good_classes=tuple(summary["good_classes"]))
        return dataclasses.replace(config, data=d).check()

    def ingested_lines(self, ingested) -> list[str]:
        s = ingested.summary
        good = s["good_classes"]
        lines = [f"classes: {', '.join(s['classes'])}"
                 + (f"  (good parts: {', '.join(good)})" if good else ""),
                 f"eval split: {s['eval_source']}  (layout {s['layout']}, mode {s['mode']})"]
        a = s.get("annotations", {})
        if a.get("annotated_images"):
            lines.append(f"VOC boxes: {a['boxes']} in {a['annotated_images']} images")
        if a.get("box_label_mismatches"):
            lines.append(f"VOC boxes labelled with another class than their image (reported, "
                         f"not used): {len(a['box_label_mismatches'])}")
        if s.get("ignored_classes"):
            lines.append(f"images of classes not in data.classes (left out): "
                         f"{s['ignored_classes']}")
        return lines

    # -- pipeline and results --------------------------------------------------------------

    def spec(self, config: DefectConfig):
        from apps.defect_images.pipeline import eval_config
        from pipelines.builder import ReportSpec, TFLiteSpec
        from suite.metrics import accuracy, roc_auc, sensitivity

        anomaly = config.mode == "anomaly"
        return self.pipeline_spec(
            name=f"{self.command}-anomaly" if anomaly else self.command,
            eval_config=eval_config, label_key=IS_DEFECT if anomaly else LABEL,
            model_input_key=IMAGE_XF, splits=SPLITS, trainer_eval_split="validation",
            tflite=TFLiteSpec(student="" if anomaly else
                              "blocks.vision.backbones:compact_student"),
            report=ReportSpec(
                explain="" if anomaly else "grad_cam",
                statistics=((("auc", roc_auc), ("recall", sensitivity)) if anomaly else
                            (("sparse_categorical_accuracy", accuracy),)),
                intended_use=(
                    "Flags product or surface images that look unlike the good parts it was "
                    "fitted on (unsupervised), for a quality engineer to inspect."
                    if anomaly else
                    "Classifies the surface defect type of a product image on the line, so "
                    "that quality engineers can sort parts and trace defect causes."),
                not_for=(
                    "Releasing parts without inspection, or products, cameras, lighting and "
                    "defect types it was not fitted on: a new line needs its own evaluation."),
                split_rule=(
                    "The data's own test folder, or the images numbered in data.eval_indices, "
                    f"or {config.data.eval_fraction:.0%} of each class are the eval split; "
                    f"{config.data.validation_fraction:.0%} of the rest the validation split "
                    "(seeded)."),
                decision_rule="The most probable defect class of the image.",
                limitations=("Images are judged as a whole at the model's input size: "
                             "defects much smaller than a pixel of it can be missed.",)))

    def metric_lines(self, metrics, config: DefectConfig, ingested) -> list[str]:
        if config.mode == "anomaly":
            return _anomaly_lines(metrics)
        return _classify_lines(metrics, config.data.classes)

    def pushed_lines(self, pushed_dir: str) -> list[str]:
        from serving.export import load_metadata

        metadata = load_metadata(pushed_dir)
        if metadata.get("mode") != "anomaly":
            return []
        lines = [f"  anomaly threshold {metadata['threshold']:.4g} on the score "
                 f"({metadata['threshold_rule']} on the validation split; method "
                 f"{metadata['method']})"]
        other = {k: v for k, v in metadata["thresholds"].items()
                 if k != metadata["threshold_rule"]}
        for rule, value in other.items():
            lines.append(f"  ({rule} threshold would be {value:.4g})")
        return lines


def _value(values: dict, key: str) -> str:
    v = values.get(key)
    return f"{v:.4f}" if v is not None and v == v else "  -   "


def _classify_lines(metrics, classes) -> list[str]:
    lines = []
    overall = metrics.get("overall", {})
    count = overall.get("example_count")
    lines.append(f"  overall            accuracy {_value(overall, 'sparse_categorical_accuracy')}"
                 f"  images {int(count) if count else '?'}")
    lines.append(f"  {'class':<18} {'recall':>8} {'precision':>10}")
    for i, name in enumerate(classes):
        lines.append(f"  {name:<18} {_value(overall, f'recall/class_{i}'):>8} "
                     f"{_value(overall, f'precision/class_{i}'):>10}")
    for name, values in sorted(metrics.items()):
        if name.startswith("defect_size="):
            lines.append(f"  {name:<28} accuracy "
                         f"{_value(values, 'sparse_categorical_accuracy')}  images "
                         f"{int(values.get('example_count', 0))}")
    return lines


def _anomaly_lines(metrics) -> list[str]:
    lines = []
    for name, values in sorted(metrics.items(), key=lambda kv: (kv[0] != "overall", kv[0])):
        count = values.get("example_count")
        figures = (f"AUROC {_value(values, 'auc')}  " if name == "overall" else "") + \
            (f"accuracy {_value(values, 'binary_accuracy')}  recall on defects "
             f"{_value(values, 'recall')}  false alarms {_value(values, 'fall_out')}")
        lines.append(f"  {name:<28} {figures}  images {int(count) if count else '?'}")
    return lines


APP = DefectImages()
