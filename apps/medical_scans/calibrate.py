"""Site calibration of a pushed medical-scans model (``medical-scans calibrate``).

A site's scans go through the pushed model as served. Images the model refers as unlike
its training data are left out. With unlabelled scans, the site's prevalence is estimated
by EM on the calibrated posteriors (``decision.em_prevalence``) and the threshold moves to
the fewest expected errors at that prevalence; with labelled scans, the model's own rule
(``decision.rule``) is applied to them. The refer band moves with the threshold. The result
is a new version under the same model base path: the same graph with the new threshold
values (the served variables of ``decision.Decision.values``), its metadata recording the site
calibration, published atomically (``serving.versions.push_atomically``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from apps.medical_scans import decision as decisions, evaluation
from apps.medical_scans.explain import ServedScans
from serving.export import METADATA_FILE, served_variables
from serving.versions import push_atomically
from suite.metrics import decision_threshold

CARD_MD = os.path.join("assets.extra", "model_card.md")


def site_images(folder: str, classes: Sequence[str]) -> tuple[list[str], list[int] | None]:
    """The image files (JPEG, PNG, DICOM) under ``folder``, sorted, and their labels when
    ``folder`` holds a folder per class (named as the model's classes, negative first):
    labelled site scans; otherwise every image below ``folder``, unlabelled."""
    from apps.medical_scans.data import is_image_file  # noqa: PLC0415

    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: no such folder; expected a folder of site scans")
    labelled = all(os.path.isdir(os.path.join(folder, c)) for c in classes)
    roots = [(os.path.join(folder, c), i) for i, c in enumerate(classes)] if labelled \
        else [(folder, None)]
    files, labels = [], []
    for root, label in roots:
        for where, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                path = os.path.join(where, name)
                if is_image_file(path):
                    files.append(path)
                    labels.append(label)
    if not files:
        raise ValueError(f"{folder}: no JPEG, PNG or DICOM files found"
                         + (f" in the class folders {list(classes)}" if labelled else ""))
    return files, labels if labelled else None


@dataclass(frozen=True)
class SiteCalibration:
    """What a calibration found and wrote."""

    images: int  # site images given
    used: int  # images used (those the model does not refer as out of distribution)
    prevalence: float | None  # estimated (unlabelled) or counted (labelled) positive share
    old_threshold: float
    threshold: float
    rule: dict
    refer_band: tuple[float, float]
    referred: int  # images referred after calibration (unsure or out of distribution)
    site_report: dict | None  # labelled: binary_report at the old and the new threshold
    version_dir: str


def calibrate(model_path: str, images: Sequence[bytes], labels: Sequence[int] | None = None,
              base_dir: str | None = None) -> SiteCalibration:
    """Calibrates the pushed model at ``model_path`` (a version folder or a base path) to
    a site's encoded images (labels 0 / 1 when known) and publishes the new version under
    ``base_dir`` (default: the model's own base path)."""
    served = ServedScans(model_path)
    metadata = served.metadata
    config = served.app_config
    if "calibration" not in metadata:
        raise ValueError(f"{served.model_dir}: this model records no validation calibration "
                         "(exported before site calibration existed); train it again")
    outputs = served.predict_images(images)
    positive = np.asarray(outputs["probabilities"], np.float64)[:, 1]
    unlike = np.asarray(outputs["ood_score"]) > (metadata["ood_limit"] or np.inf)
    used = ~unlike
    if not used.any():
        raise ValueError(f"all {len(images)} site images are unlike the training data (out "
                         "of distribution): nothing to calibrate on")
    old = float(metadata["threshold"])
    report = None
    if labels is None:
        calibration = metadata["calibration"]
        prevalence = decisions.em_prevalence(
            decisions.posterior(positive[used], calibration), calibration["prevalence"])
        threshold = decisions.prevalence_threshold(calibration, prevalence)
        rule = {"rule": "site_prevalence", "prevalence": prevalence,
                "on": f"{int(used.sum())} unlabelled site scans"}
    else:
        y = np.asarray(labels).astype(int)[used]
        d = config.decision
        threshold = decision_threshold(y, positive[used], d.rule, d.target, d.margin)
        prevalence = float(y.mean())
        rule = {"rule": d.rule, "target": d.target, "margin": d.margin,
                "on": f"{int(used.sum())} labelled site scans"}
        report = {"before": evaluation.binary_report(y, positive[used], old),
                  "after": evaluation.binary_report(y, positive[used], threshold)}
    band = decisions.refer_band(threshold, config.decision.refer_band)
    values = {"decision_threshold": threshold, "refer_low": band[0], "refer_high": band[1]}
    referred = int(unlike.sum() + ((positive >= band[0]) & (positive < band[1]) & used).sum())
    site = {"images": len(images), "used": int(used.sum()), "prevalence": prevalence,
            "previous_threshold": old, "from_version": os.path.basename(served.model_dir),
            "labelled": labels is not None}
    new_metadata = {**metadata, "threshold": threshold,
                    "threshold_rule": decisions.describe_rule(rule), "decision_rule": rule,
                    "refer_band": list(band), "site_calibration": site}
    new_metadata["decision_details"] = [
        *decisions.details(band, metadata["ood_limit"]),
        f"Calibrated to a site on {site['used']} scans: threshold {old:.4f} -> "
        f"{threshold:.4f}, chosen by {new_metadata['threshold_rule']}."]
    base = base_dir or os.path.dirname(served.model_dir.rstrip("/"))
    version_dir = _write_version(served.model_dir, values, new_metadata, base)
    return SiteCalibration(len(images), int(used.sum()), prevalence, old, threshold, rule,
                           band, referred, report, version_dir)


def _write_version(model_dir: str, values: dict[str, float], metadata: dict,
                   base_dir: str) -> str:
    """The SavedModel at ``model_dir`` with its decision variables set to ``values``,
    its extra assets copied and its metadata replaced, published as a new version."""
    import tensorflow as tf  # noqa: PLC0415

    loaded = tf.saved_model.load(model_dir)
    variables = served_variables(loaded)
    missing = sorted(set(values) - set(variables))
    if missing:
        raise ValueError(f"{model_dir}: the served graph has no decision variables "
                         f"{missing}; it was exported before site calibration existed")
    for name, value in values.items():
        variables[name].assign(value)
    os.makedirs(base_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base_dir, prefix=".calibrating-") as staging:
        out = os.path.join(staging, "model")
        tf.saved_model.save(loaded, out, signatures=dict(loaded.signatures))
        extra = os.path.join(model_dir, "assets.extra")
        shutil.copytree(extra, os.path.join(out, "assets.extra"), dirs_exist_ok=True)
        with open(os.path.join(out, METADATA_FILE), "w") as f:
            json.dump(metadata, f, indent=2)
        card = os.path.join(out, CARD_MD)
        if os.path.exists(card):  # the card of the version calibrated from, and what changed
            with open(card, "a") as f:
                f.write("\n## Site calibration\n\n" + metadata["decision_details"][-1]
                        + "\n")
        version, _ = push_atomically(out, base_dir)
    return os.path.join(base_dir, version)
