"""``defect-images``: surface-defect classification and anomaly detection for visual quality
control.

Only argparse and the app's declaration are imported at start-up, so ``--help`` answers at
once; TensorFlow and TFX load when a command needs them.
"""

from __future__ import annotations

import sys

from apps.base import cli
from apps.defect_images.app import APP

DESCRIPTION = """\
Visual quality control from a camera over a production line, in two modes:
  classify  which defect (labelled defect classes, for routing and statistics): a CNN or a
            ResNet trained from scratch, with accuracy, per-class recall and precision and
            the confusion matrix, by class and by defect size;
  anomaly   is this part OK (plenty of good parts, rare and varied defects): a model of the
            good parts only, an anomaly score and a per-pixel anomaly map, the threshold
            chosen on a validation split (Youden's J where labelled defects exist there,
            else a target false-alarm rate), AUROC, recall on defects and false alarms.
Both deploy for TF Serving (the served model takes the encoded image bytes a camera sends)
and as TFLite files, and explain: Grad-CAM (classify) or the anomaly map (anomaly).

Data: folders  one folder per class (ok_front/, def_front/), optionally under train/ and
               test/ (the test/ folder is the eval split);
      prefix   one folder where the class is the file-name prefix (crazing_12.jpg,
               rolled-in_scale_7.jpg; --prefix-pattern).
JPEG, PNG or BMP, grayscale or colour. Pascal VOC boxes (<image stem>.xml in an annotations/
folder in or next to the data folder) are kept for slicing and for checking where
explanations point. --eval-indices 201-240 holds out the images so numbered; otherwise a
stratified share of each class. Bad files stop the run naming the file, or are skipped and
counted with --skip-bad-files. In anomaly mode the good-part classes are those named ok*,
good*, normal* or pass* unless --good-classes names them.
"""

EXAMPLES = """\
examples:
  defect-images run                                   # demo: generated surfaces, tiny preset
  defect-images run --data casting_data --preset default           # train/ and test/ folders
  defect-images run --data NEU/images --format prefix --eval-indices 201-240 --preset default
  defect-images run --data casting_data --mode anomaly --good-classes ok_front
  defect-images run --data NEU/images --format prefix --mode anomaly --good-classes crazing
  defect-images predict --model workspace/serving/models/defect_images part1.png part2.jpg
  defect-images predict --server localhost:8500 --model-name defect_images_anomaly part1.bmp
  defect-images explain --model workspace/serving/models/defect_images NEU/images/crazing_201.jpg
  defect-images generate --out surfaces --format prefix --classes ok,scratch,spot
  defect-images compile --target kubeflow-v2 --image gcr.io/acme/suite:1 --out pipeline.json
"""


def _load_images(files):
    """(readable files, their encoded bytes, (file, reason) of the unreadable ones)."""
    from apps.defect_images import data

    return cli.read_each(files, data.load_image_bytes)


def _line(path: str, label: str, probability: float, is_defect, score, threshold) -> str:
    if score is not None:
        return (f"{path}: {label}  (anomaly score {score:.4g}, threshold {threshold:.4g}, "
                f"probability of a defect {probability:.3f})")
    verdict = "" if is_defect is None else f"; {'defect' if is_defect else 'good part'}"
    return f"{path}: {label}  (probability {probability:.3f}{verdict})"


def cmd_predict(args) -> int:
    """Classifies (classify mode) or scores (anomaly mode) image files with a pushed model (a
    version folder or the model base path), or through a model server (--server
    HOST:PORT). Every readable file is answered; unreadable ones are listed and the exit
    status is 2."""
    cli.check_model_or_server(args)
    from suite.quiet import quiet

    quiet()
    files, images, bad = _load_images(args.files)
    rows = []
    if images and args.server:
        from apps.defect_images.client import DefectImagesClient

        with cli.server_errors(args):
            result = DefectImagesClient(args.server, model=args.model_name).predict(images)
        print(f"server: {args.server} (model {args.model_name})")
        for i, label in enumerate(result.labels):
            anomaly = result.scores is not None
            rows.append((label, float(result.probabilities[i][1] if anomaly
                                      else result.probabilities[i].max()),
                         None if result.is_defect is None else int(result.is_defect[i]),
                         float(result.scores[i]) if anomaly else None,
                         float(result.thresholds[i]) if anomaly else None))
    elif images:
        from apps.defect_images.explain import ServedDefects

        served = ServedDefects(args.model)
        out = served.predict(images)
        print(f"model: {served.model_dir} ({served.mode} mode)")
        anomaly = served.mode == "anomaly"
        for i, label in enumerate(out["labels"]):
            rows.append((label, float(out["probabilities"][i][1] if anomaly
                                      else out["scores"][i]),
                         int(out["is_defect"][i]) if "is_defect" in out else None,
                         float(out["score"][i]) if anomaly else None,
                         float(out["threshold"][i]) if anomaly else None))
    for path, row in zip(files, rows, strict=True):
        print(_line(path, *row))
    return cli.report_unreadable(bad)


def cmd_explain(args) -> int:
    """Writes, for each image, what the pushed model looked at, computed on the Keras model
    kept inside it: the Grad-CAM heatmap of the decided class (classify mode) or the anomaly
    map (anomaly mode), over the image (PNG), and explanations.json. Where Pascal VOC boxes
    exist for an image (--annotations, or found beside it), the share of the heat inside the
    boxes is reported against the share of the image they cover."""
    from suite.quiet import quiet

    quiet()
    from apps.defect_images import data
    from apps.defect_images.explain import ServedDefects, annotation_boxes, box_summary

    files, images, bad = _load_images(args.files)
    if not images:
        return cli.report_unreadable(bad)
    boxes = []
    for path in files:
        try:
            boxes.append(annotation_boxes(path, args.annotations))
        except data.DataError as e:
            bad.append((path, str(e)))
            boxes.append(None)
    served = ServedDefects(args.model)
    print(f"model: {served.model_dir} ({served.mode} mode)")
    results = served.explain(images, files, args.out, boxes)
    for r in results:
        figure = (f"score {r['score']:.4g} (threshold {r['threshold']:.4g})" if "score" in r
                  else f"probability {r['probability']:.3f}")
        inside = (f"; heat in boxes {r['heat_in_boxes']:.1%} of the heat on "
                  f"{r['box_area']:.1%} of the image" if "heat_in_boxes" in r else "")
        print(f"{r['file']}: {r['label']} ({figure}{inside}) -> {r['heatmap']}")
    summary = box_summary(results)
    if summary:
        print(f"boxes: {summary['heat_in_boxes']:.1%} of the heat inside the defect boxes, "
              f"which cover {summary['box_area']:.1%} of the image (lift "
              f"{summary['lift']:.2f}; {summary['images']} image(s))")
    return cli.report_unreadable(bad)


def commands(sub) -> None:
    """The app-only commands."""
    pred = sub.add_parser("predict", help="classify or score image files",
                          description=cmd_predict.__doc__)
    cli.add_serving_arguments(pred, APP)
    pred.add_argument("files", nargs="+", metavar="IMAGE", help="JPEG, PNG or BMP files")
    pred.set_defaults(func=cmd_predict)

    exp = sub.add_parser("explain", help="Grad-CAM heatmaps or anomaly maps of image files",
                         description=cmd_explain.__doc__)
    cli.add_serving_arguments(exp, APP, required_model=True)
    exp.add_argument("--out", default="explanations", metavar="DIR",
                     help="where the PNGs and explanations.json go (default: ./explanations)")
    exp.add_argument("--annotations", metavar="DIR",
                     help="Pascal VOC folder (default: beside each image, or an "
                          "annotations/ folder next to its folder)")
    exp.add_argument("files", nargs="+", metavar="IMAGE", help="JPEG, PNG or BMP files")
    exp.set_defaults(func=cmd_explain)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``defect-images``."""
    return cli.main(APP, argv, DESCRIPTION, EXAMPLES, commands)


if __name__ == "__main__":
    sys.exit(main())
