"""``medical-scans``: chest X-ray (and other two-class scan) classification.

Only argparse is imported at start-up, so ``--help`` answers at once; TensorFlow and TFX
load when a command needs them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from suite.app_cli import (
    add_compile_arguments, add_run_arguments, add_set_argument, apply_overrides,
    compile_pipeline, pipeline_paths, run_command, say)

APP = "medical_scans"
FORMATS = ("folders", "npz", "dicom")  # config.FORMATS, without imports

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


def add_config_args(p: argparse.ArgumentParser) -> None:
    """The configuration arguments of run and compile."""
    p.add_argument("--preset", default="tiny", choices=["tiny", "default", "full"],
                   help="model size and training (tiny: a minute on a laptop; default: the "
                        "benchmark setting, about 30 minutes on 2 CPU cores)")
    p.add_argument("--format", choices=FORMATS, help="input format (default: folders)")
    p.add_argument("--model", choices=["cnn", "resnet"],
                   help="cnn (compact) or resnet (keras-hub ResNet, from scratch)")
    p.add_argument("--image-size", type=int, help="input resolution in pixels")
    p.add_argument("--epochs", type=int, help="training epochs (overrides the preset)")
    p.add_argument("--skip-bad-files", action="store_true",
                   help="skip unreadable image files (each reported) instead of stopping")
    add_set_argument(p)


def config_from_args(args):
    """The preset with the command line's overrides applied."""
    from apps.medical_scans.config import check, preset

    config = apply_overrides(preset(args.preset), {
        "data.format": args.format,
        "data.skip_bad_files": True if args.skip_bad_files else None,
        "model.kind": args.model,
        "model.image_size": args.image_size,
        "train.epochs": args.epochs,
    }, args.set)
    return check(config)


def cmd_run(args) -> int:
    """Ingests the images, runs the whole pipeline; prints the evaluation and where the
    served and edge models are."""
    from suite.quiet import quiet

    quiet()
    from apps.medical_scans import data
    from suite.config import to_dict

    config = config_from_args(args)
    workspace = os.path.abspath(args.workspace)
    path = args.data
    if path is None:
        name = "images.npz" if config.data.format == "npz" else f"images-{config.data.format}"
        path = os.path.join(workspace, APP, "generated", name)
        if not os.path.exists(path):
            say(f"no --data given: generating {config.data.format} images in {path}")
            data.generate_synthetic(path, config.data.format, n_per_class=60, size=48)
    say(f"reading {config.data.format} images from {path}")
    ingested = data.ingest(path, config.data, os.path.join(workspace, APP, "examples"),
                           progress=say)
    counts = ingested.summary.get("counts", {})
    say(f"examples: {counts} -> {ingested.examples_dir}")
    if ingested.skipped:
        say(f"skipped {len(ingested.skipped)} bad file(s) (listed in "
            f"{os.path.join(ingested.examples_dir, 'summary.json')})")

    paths = pipeline_paths(workspace, APP, ingested.examples_dir, args.serving_dir)
    os.makedirs(os.path.dirname(paths.metadata_path), exist_ok=True)
    config_path = os.path.join(workspace, APP, "config.json")
    with open(config_path, "w") as f:
        json.dump({"preset": args.preset, "data": os.path.abspath(path), "runner": args.runner,
                   "config": to_dict(config), "paths": dataclasses.asdict(paths)}, f, indent=2)
    say(f"effective config written to {config_path}")

    from apps.medical_scans.pipeline import APP as SPEC
    from pipelines.builder import create_pipeline
    from pipelines.results import latest_run
    from pipelines.runners import beam_args, run_local

    say("running the pipeline (ExampleGen, statistics, schema, validation, transform, "
        "training, evaluation, serving check, push, TFLite)")
    pipeline = create_pipeline(SPEC, config, paths, beam_pipeline_args=beam_args(args.runner),
                               enable_cache=not args.no_cache)
    run_local(pipeline)
    summary = latest_run(paths.metadata_path, SPEC.name)
    print_summary(summary, ingested)
    return 0 if summary.blessed else 3


METRIC_NAMES = {"auc": "auc", "accuracy": "binary_accuracy", "sensitivity": "recall",
                "specificity": "specificity", "precision": "precision"}


def print_summary(summary, ingested) -> None:
    """Prints the clinical metrics per slice, the blessing and where the models are."""
    from pipelines.results import evaluation_metrics

    print()
    cached = sorted(n for n, s in summary.states.items() if s == "CACHED")
    if cached:
        print(f"reused from cache: {', '.join(cached)}")
    if ingested.skipped:
        print(f"skipped files: {len(ingested.skipped)}")
    if summary.evaluation_uri:
        for name, values in sorted(evaluation_metrics(summary.evaluation_uri).items()):
            # A slice holding one class only (e.g. the normal images' subtype) has no AUC,
            # and no sensitivity or no specificity (TFMA reports NaN, or 0 for the AUC).
            one_class = any(values.get(k) != values.get(k) for k in ("recall", "specificity"))
            figures = "  ".join(f"{label} {values[key]:.4f}"
                                for label, key in METRIC_NAMES.items()
                                if key in values and values[key] == values[key]
                                and not (one_class and key == "auc"))
            count = values.get("example_count")
            print(f"  {name:<18} {figures}  images {int(count) if count else '?'}")
    print(f"blessed: {'yes' if summary.blessed else 'NO (thresholds not met; nothing pushed)'}")
    if summary.pushed:
        from serving.export import load_metadata

        print(f"TF Serving model: {summary.pushed_destination}")
        metadata = load_metadata(summary.pushed_destination)
        print(f"  decision threshold {metadata['threshold']:.4f} on the probability of "
              f"{metadata['positive_class']} (chosen on the validation split)")
    if summary.edge_dir:
        print(f"TFLite models:    {summary.edge_dir}")
        with open(os.path.join(summary.edge_dir, "report.json")) as f:
            report = json.load(f)
        for variant, r in report["variants"].items():
            print(f"  {variant:<14} {r['size_bytes'] / 1024:8.1f} KiB  "
                  f"{r['latency_ms_mean']:7.3f} ms  agreement {r['agreement']:.4f}")


def _load_images(files, config_data):
    """Encoded bytes of each file (DICOM converted to PNG); bad files raise DataError."""
    from apps.medical_scans import data

    return [data.load_image_bytes(path, config_data) for path in files]


def cmd_predict(args) -> int:
    """Classifies image files with a pushed model (a version folder or the model base
    path), or through a model server (--server HOST:PORT)."""
    from suite.quiet import quiet

    quiet()
    from apps.medical_scans.config import DataConfig

    if (args.model is None) == (args.server is None):
        raise ValueError("predict: expected either --model DIR (load the model here) or "
                         "--server HOST:PORT (ask a model server)")
    images = _load_images(args.files, DataConfig())
    if args.server:
        from serving.clients import MedicalScansClient, ServingClientError

        try:
            result = MedicalScansClient(args.server, model=args.model_name).predict(images)
        except ServingClientError as e:
            print(f"error: server {args.server}, model {args.model_name}: {e}", file=sys.stderr)
            return 2
        labels, probabilities, thresholds = result.labels, result.probabilities, \
            result.thresholds
        print(f"server: {args.server} (model {args.model_name})")
    else:
        from apps.medical_scans.explain import ServedModel

        served = ServedModel(args.model)
        outputs = served.predict(images)
        labels = outputs["labels"]
        probabilities, thresholds = outputs["probabilities"], outputs["threshold"]
        print(f"model: {served.model_dir}")
    for path, label, p, t in zip(args.files, labels, probabilities, thresholds, strict=True):
        print(f"{path}: {label}  (probability of {label}: "
              f"{p[1] if p[1] >= t else p[0]:.3f}; positive probability {p[1]:.3f}, "
              f"threshold {t:.3f})")
    return 0


def cmd_explain(args) -> int:
    """Writes, for each image, a Grad-CAM heatmap of the predicted class over the image
    (PNG), computed on the Keras model kept inside the pushed SavedModel."""
    from suite.quiet import quiet

    quiet()
    from apps.medical_scans.config import DataConfig
    from apps.medical_scans.explain import ServedModel

    served = ServedModel(args.model)
    images = _load_images(args.files, DataConfig())
    print(f"model: {served.model_dir}")
    for path, result in zip(args.files, served.explain(images, args.files, args.out),
                            strict=True):
        print(f"{path}: {result['label']} (positive probability "
              f"{result['probability']:.3f}) -> {result['heatmap']}")
    return 0


def cmd_generate(args) -> int:
    """Writes generated two-class scans in a supported format (for trying the app out)."""
    from apps.medical_scans import data

    out = data.generate_synthetic(args.out, args.format, n_per_class=args.per_class,
                                  size=args.size, seed=args.seed)
    print(f"wrote {args.format} images to {out}")
    return 0


def cmd_compile(args) -> int:
    """Compiles the same pipeline into a Kubeflow Pipelines / Vertex AI spec."""
    from suite.quiet import quiet

    quiet()
    from apps.medical_scans.pipeline import APP as SPEC

    return compile_pipeline(SPEC, config_from_args(args), args, APP)


def build_parser() -> argparse.ArgumentParser:
    """The command line of the app."""
    parser = argparse.ArgumentParser(
        prog="medical-scans", description=DESCRIPTION, epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train, evaluate and deploy a classifier from images",
                         description=cmd_run.__doc__)
    run.add_argument("--data", metavar="PATH",
                     help="image folder or .npz file (default: generate demo images)")
    add_config_args(run)
    add_run_arguments(run, APP)
    run.set_defaults(func=cmd_run)

    pred = sub.add_parser("predict", help="classify image files",
                          description=cmd_predict.__doc__)
    pred.add_argument("--model", metavar="DIR",
                      help="pushed model: a version folder or the model base path (newest)")
    pred.add_argument("--server", metavar="HOST:PORT", help="ask a model server (gRPC)")
    pred.add_argument("--model-name", default=APP, help=f"served model name (default: {APP})")
    pred.add_argument("files", nargs="+", metavar="IMAGE", help="PNG, JPEG or DICOM files")
    pred.set_defaults(func=cmd_predict)

    exp = sub.add_parser("explain", help="Grad-CAM heatmaps of what the model looked at",
                         description=cmd_explain.__doc__)
    exp.add_argument("--model", required=True, metavar="DIR",
                     help="pushed model: a version folder or the model base path (newest)")
    exp.add_argument("--out", default="explanations", metavar="DIR",
                     help="where the heatmap PNGs go (default: ./explanations)")
    exp.add_argument("files", nargs="+", metavar="IMAGE", help="PNG, JPEG or DICOM files")
    exp.set_defaults(func=cmd_explain)

    gen = sub.add_parser("generate", help="write generated two-class scans",
                         description=cmd_generate.__doc__)
    gen.add_argument("--out", required=True, metavar="PATH",
                     help="folder (folders, dicom) or .npz file (npz)")
    gen.add_argument("--format", default="folders", choices=FORMATS)
    gen.add_argument("--per-class", type=int, default=60)
    gen.add_argument("--size", type=int, default=48)
    gen.add_argument("--seed", type=int, default=0)
    gen.set_defaults(func=cmd_generate)

    comp = sub.add_parser("compile", help="write a Kubeflow Pipelines / Vertex AI spec",
                          description=cmd_compile.__doc__)
    add_compile_arguments(comp, APP)
    add_config_args(comp)
    comp.set_defaults(func=cmd_compile)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``medical-scans``."""
    return run_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
