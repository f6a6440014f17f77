"""``medical-scans``: chest X-ray (and other two-class scan) classification.

Only argparse and the app's declaration are imported at start-up, so ``--help`` answers at
once; TensorFlow and TFX load when a command needs them.
"""

from __future__ import annotations

import sys

from apps.base import cli
from apps.medical_scans.app import APP

DESCRIPTION = """\
Chest X-ray classification (normal / pneumonia, or any two classes of scans): trains a CNN
on labelled images, checks it on patients it never saw, and deploys it for TF Serving and as
TFLite files, with the decision threshold, and Grad-CAM explanations of what it looked at.

Data: folders  a folder of class folders of JPEG/PNG images (NORMAL/, PNEUMONIA/), or
               train/ and test/ (or val/) folders of class folders;
      dicom    the same layouts with DICOM files (rescale slope/intercept and the window are
               applied);
      npz      a MedMNIST-style .npz (train_images, train_labels, val_images, ...).
Images of one patient (person123_... in the file name) never land in two splits. The
decision threshold is chosen on a validation split of training patients; the model is
deployed only when its AUC and sensitivity on the held-out patients reach the thresholds
and its AUC does not drop against the model deployed before.
"""

EXAMPLES = """\
examples:
  medical-scans run                                  # demo: generated images, tiny preset
  medical-scans run --data chest_xray/train --preset default
  medical-scans run --data pneumoniamnist.npz --format npz --set model.image_size=28
  medical-scans run --data scans/ --format dicom --skip-bad-files
  medical-scans predict --model workspace/serving/models/medical_scans scan1.png scan2.jpeg
  medical-scans predict --server localhost:8500 scan1.png
  medical-scans explain --model workspace/serving/models/medical_scans scan1.png --out heat/
  medical-scans calibrate --model workspace/serving/models/medical_scans --images site_scans/
  medical-scans compile --target kubeflow-v2 --image gcr.io/acme/suite:1 --out pipeline.json
"""


def _load_images(files, config=None):
    """(readable files, their encoded bytes, (file, reason) of the unreadable ones); DICOM
    is converted to PNG, its modality and view checked against ``config`` (a DataConfig;
    default: the defaults)."""
    from apps.medical_scans import data
    from apps.medical_scans.config import DataConfig

    return cli.read_each(files, lambda path: data.load_image_bytes(path,
                                                                   config or DataConfig()))


def cmd_predict(args) -> int:
    """Classifies image files with a pushed model (a version folder or the model base
    path), or through a model server (--server HOST:PORT). Every readable file is answered;
    unreadable ones (and DICOM files of a modality or view the default data config does not
    take) are listed and the exit status is 2."""
    cli.check_model_or_server(args)
    from suite.quiet import quiet

    quiet()
    from apps.medical_scans.decision import REFER_UNCERTAIN, REFER_UNLIKE

    files, images, bad = _load_images(args.files)
    if images and args.server:
        from apps.medical_scans.client import MedicalScansClient

        with cli.server_errors(args):
            result = MedicalScansClient(args.server, model=args.model_name).predict(images)
        labels, probabilities, thresholds, decisions = (
            result.labels, result.probabilities, result.thresholds, result.decisions)
        print(f"server: {args.server} (model {args.model_name})")
    elif images:
        from apps.medical_scans.explain import ServedScans

        served = ServedScans(args.model)
        outputs = served.predict_images(images)
        labels, decisions = outputs["labels"], outputs["decisions"]
        probabilities, thresholds = outputs["probabilities"], outputs["threshold"]
        print(f"model: {served.model_dir}")
    for path, label, decision, p, t in zip(
            files, *((labels, decisions, probabilities, thresholds) if images else [[]] * 4),
            strict=True):
        why = {REFER_UNCERTAIN: f"refer to a reader: unsure, {label} by a narrow margin",
               REFER_UNLIKE: "refer to a reader: this image is unlike the scans the model "
                             f"was trained on (it would have said {label})"}
        print(f"{path}: {why.get(decision, label)}  (probability of {label}: "
              f"{p[1] if p[1] >= t else p[0]:.3f}; positive probability {p[1]:.3f}, "
              f"threshold {t:.3f})")
    return cli.report_unreadable(bad)


def cmd_explain(args) -> int:
    """Writes, for each image, a Grad-CAM heatmap of the predicted class over the image
    (PNG), computed on the Keras model kept inside the pushed SavedModel."""
    from suite.quiet import quiet

    quiet()
    from apps.medical_scans.explain import ServedScans

    files, images, bad = _load_images(args.files)
    if images:
        served = ServedScans(args.model)
        print(f"model: {served.model_dir}")
        for path, result in zip(files, served.explain(images, files, args.out), strict=True):
            print(f"{path}: {result['label']} (positive probability "
                  f"{result['probability']:.3f}) -> {result['heatmap']}")
    return cli.report_unreadable(bad)


def cmd_calibrate(args) -> int:
    """Calibrates a pushed model to a site from a batch of its scans and publishes the result
    as a new model version beside it (same graph, new threshold; the metadata and the model
    card record the calibration). --images holds either unlabelled scans (any layout): the
    site's prevalence is estimated (EM, Saerens et al. 2002) and the threshold moves to the
    fewest expected errors at that prevalence; or a folder per class (e.g. NORMAL/,
    PNEUMONIA/): the model's own threshold rule is applied to the labelled site scans.
    Scans the model refers as unlike its training data are left out."""
    from suite.quiet import quiet

    quiet()
    from apps.medical_scans.calibrate import calibrate, site_images
    from apps.medical_scans.explain import ServedScans
    from apps.medical_scans.decision import describe_rule

    served = ServedScans(args.model)
    config = served.app_config
    files, labels = site_images(args.images, config.data.classes)
    by_file = dict(zip(files, labels or [None] * len(files), strict=True))
    read, images, bad = _load_images(files, config.data)
    if bad:
        return cli.report_unreadable(bad)
    result = calibrate(served.model_dir, images,
                       [by_file[f] for f in read] if labels is not None else None,
                       base_dir=args.out)
    print(f"model: {served.model_dir}")
    print(f"site scans: {result.images} ({'labelled' if labels is not None else 'unlabelled'}"
          f"), {result.used} used, {result.images - result.used} left out as unlike the "
          "training data")
    what = "estimated" if labels is None else "counted"
    print(f"site prevalence of {config.data.classes[1]}: {result.prevalence:.3f} ({what}; "
          f"validation split: {served.metadata['calibration']['prevalence']:.3f})")
    print(f"threshold: {result.old_threshold:.4f} -> {result.threshold:.4f}, chosen by "
          f"{describe_rule(result.rule)}")
    if result.refer_band[1] > result.refer_band[0]:
        print(f"refer band: [{result.refer_band[0]:.4f}, {result.refer_band[1]:.4f})")
    print(f"referred to a reader after calibration: {result.referred} of {result.images}")
    if result.site_report:
        for when in ("before", "after"):
            r = result.site_report[when]
            print(f"  site scans {when:<6}: accuracy {r['accuracy']:.4f}  sensitivity "
                  f"{r['sensitivity']:.4f}  specificity {r['specificity']:.4f}  (AUC "
                  f"{r['auc']:.4f})")
    print(f"new version: {result.version_dir}")
    return 0


def commands(sub) -> None:
    """The app-only commands."""
    pred = sub.add_parser("predict", help="classify image files",
                          description=cmd_predict.__doc__)
    cli.add_serving_arguments(pred, APP)
    pred.add_argument("files", nargs="+", metavar="IMAGE", help="PNG, JPEG or DICOM files")
    pred.set_defaults(func=cmd_predict)

    exp = sub.add_parser("explain", help="Grad-CAM heatmaps of what the model looked at",
                         description=cmd_explain.__doc__)
    cli.add_serving_arguments(exp, APP, required_model=True)
    exp.add_argument("--out", default="explanations", metavar="DIR",
                     help="where the heatmap PNGs go (default: ./explanations)")
    exp.add_argument("files", nargs="+", metavar="IMAGE", help="PNG, JPEG or DICOM files")
    exp.set_defaults(func=cmd_explain)

    cal = sub.add_parser("calibrate", help="adapt a pushed model's threshold to a site",
                         description=cmd_calibrate.__doc__)
    cal.add_argument("--model", required=True, metavar="DIR",
                     help="pushed model: a version folder or the model base path (newest)")
    cal.add_argument("--images", required=True, metavar="DIR",
                     help="the site's scans: any folder of JPEG/PNG/DICOM files, or a folder "
                          "per class for labelled scans")
    cal.add_argument("--out", metavar="DIR",
                     help="model base path for the new version (default: the model's own)")
    cal.set_defaults(func=cmd_calibrate)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``medical-scans``."""
    return cli.main(APP, argv, DESCRIPTION, EXAMPLES, commands)


if __name__ == "__main__":
    sys.exit(main())
