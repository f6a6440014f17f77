"""The medical-scans app, declared: two-class scan classification (chest X-rays)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from apps.base.app import App, Progress
from apps.medical_scans.config import FORMATS, MODEL_KINDS, MedicalConfig
from apps.medical_scans.features import IMAGE_XF, LABEL, SPLITS

STUDENT = "blocks.vision.backbones:compact_student"  # the edge student (edge.distill)

# Summary label -> TFMA metric name.
METRIC_NAMES = {"auc": "auc", "accuracy": "binary_accuracy", "sensitivity": "recall",
                "specificity": "specificity", "precision": "precision"}


class MedicalScans(App):
    """Class folders of JPEG/PNG, DICOM or MedMNIST .npz -> patient-level splits -> CNN /
    ResNet with a validation-chosen decision threshold."""

    name = "medical_scans"
    command = "medical-scans"
    about = ("chest X-ray (two-class scan) classification from JPEG/PNG folders, .npz, DICOM: "
             "CNN / ResNet, Grad-CAM")
    headline_metric = ("auc", "AUC")
    config_class = MedicalConfig
    formats = FORMATS
    models = MODEL_KINDS
    data_help = "image folder or .npz file (default: generate demo images)"

    def add_config_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--image-size", type=int, help="input resolution in pixels")

    def overrides(self, args: argparse.Namespace) -> dict[str, Any]:
        return {"model.image_size": args.image_size}

    def demo_data(self, folder: str, config: MedicalConfig, progress: Progress) -> str:
        from apps.medical_scans import data

        fmt = config.data.format
        path = os.path.join(folder, "images.npz" if fmt == "npz" else f"images-{fmt}")
        if not os.path.exists(path):
            progress(f"no --data given: generating {fmt} images in {path}")
            data.generate_synthetic(path, fmt, n_per_class=60, size=48)
        return path

    def add_generate_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--per-class", type=int, default=60)
        parser.add_argument("--size", type=int, default=48)

    def generate(self, args: argparse.Namespace) -> str:
        from apps.medical_scans import data

        return data.generate_synthetic(args.out, args.format, n_per_class=args.per_class,
                                       size=args.size, seed=args.seed)

    def spec(self, config: MedicalConfig):
        from apps.medical_scans.pipeline import eval_config
        from pipelines.builder import ReportSpec, TFLiteSpec
        from suite.metrics import roc_auc, sensitivity, specificity

        # With histogram equalisation or CLAHE the .tflite files start after it: a device
        # computes it with OpenCV (which the layer matches), and int8 keeps the contrast
        # the equalised image has.
        m = config.model
        tflite = TFLiteSpec(student=STUDENT)
        if m.intensity != "none":
            tflite = TFLiteSpec(student=STUDENT, head_from="standardize", front_end=(
                f"the decoded {m.image_size}x{m.image_size} grey image, intensities in "
                "[0, 1], " + ("histogram-equalised (cv2.equalizeHist of the 8-bit image)"
                              if m.intensity == "equalize" else
                              f"CLAHE on {m.clahe_tiles}x{m.clahe_tiles} tiles, clip limit "
                              f"{m.clahe_clip:g} (cv2.createCLAHE on the 8-bit image)")
                + ", divided by 255"))
        # The Trainer validates on "validation" (best epoch, threshold); only the Evaluator
        # sees "eval".
        return self.pipeline_spec(eval_config=eval_config, label_key=LABEL,
                                  model_input_key=IMAGE_XF, splits=SPLITS, tflite=tflite,
                                  trainer_eval_split="validation", report=ReportSpec(
            explain="grad_cam",
            statistics=(("auc", roc_auc), ("recall", sensitivity),
                        ("specificity", specificity)),
            intended_use=(
                "Flags chest X-rays likely to show pneumonia so that a radiologist reads "
                "them first (triage and second reading), with a Grad-CAM map of what the "
                "model looked at."),
            not_for=(
                "Diagnosis. This model is not a medical device and is not cleared for "
                "clinical decisions; a clinician reads every image. Not for other "
                "conditions, body parts, children/adults unlike the training set, or "
                "scanners and sites it was not validated on."),
            split_rule=(
                "All images of a patient are in one split; "
                f"{config.data.eval_fraction:.0%} of the patients of each class are the eval "
                "split (or the data's own test folder), and "
                f"{config.data.validation_fraction:.0%} of the rest the validation split, "
                "where the decision threshold is chosen."),
            limitations=(
                "Not a diagnostic device.",
                "Accuracy drops on scans from other acquisition batches, sites and scanners "
                "than the training data.")))

    def metric_lines(self, metrics, config: MedicalConfig, ingested) -> list[str]:
        lines = []
        for name, values in sorted(metrics.items()):
            # A slice holding one class only (e.g. the normal images' subtype) has no AUC,
            # and no sensitivity or no specificity (TFMA reports NaN, or 0 for the AUC).
            one_class = any(values.get(k) != values.get(k) for k in ("recall", "specificity"))
            figures = "  ".join(f"{label} {values[key]:.4f}"
                                for label, key in METRIC_NAMES.items()
                                if key in values and values[key] == values[key]
                                and not (one_class and key == "auc"))
            count = values.get("example_count")
            lines.append(f"  {name:<18} {figures}  images {int(count) if count else '?'}")
        return lines

    def pushed_lines(self, pushed_dir: str) -> list[str]:
        from serving.export import load_metadata

        metadata = load_metadata(pushed_dir)
        return [f"  decision threshold {metadata['threshold']:.4f} on the probability of "
                f"{metadata['positive_class']}, chosen by {metadata['threshold_rule']}",
                *(f"  {line}" for line in metadata.get("decision_details", []))]


APP = MedicalScans()
