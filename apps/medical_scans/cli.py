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
  medical-scans compile --target kubeflow-v2 --image gcr.io/acme/suite:1 --out pipeline.json
"""


def _load_images(files):
    """(readable files, their encoded bytes, (file, reason) of the unreadable ones); DICOM
    is converted to PNG."""
    from apps.medical_scans import data
    from apps.medical_scans.config import DataConfig

    return cli.read_each(files, lambda path: data.load_image_bytes(path, DataConfig()))


def cmd_predict(args) -> int:
    """Classifies image files with a pushed model (a version folder or the model base
    path), or through a model server (--server HOST:PORT). Every readable file is answered;
    unreadable ones are listed and the exit status is 2."""
    cli.check_model_or_server(args)
    from suite.quiet import quiet

    quiet()
    files, images, bad = _load_images(args.files)
    if images and args.server:
        from apps.medical_scans.client import MedicalScansClient

        with cli.server_errors(args):
            result = MedicalScansClient(args.server, model=args.model_name).predict(images)
        labels, probabilities, thresholds = (result.labels, result.probabilities,
                                             result.thresholds)
        print(f"server: {args.server} (model {args.model_name})")
    elif images:
        from apps.medical_scans.explain import ServedScans

        served = ServedScans(args.model)
        outputs = served.predict_images(images)
        labels = outputs["labels"]
        probabilities, thresholds = outputs["probabilities"], outputs["threshold"]
        print(f"model: {served.model_dir}")
    for path, label, p, t in zip(files, labels if images else [],
                                 probabilities if images else [],
                                 thresholds if images else [], strict=True):
        print(f"{path}: {label}  (probability of {label}: "
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``medical-scans``."""
    return cli.main(APP, argv, DESCRIPTION, EXAMPLES, commands)


if __name__ == "__main__":
    sys.exit(main())
