"""The contract every app's tests run, the same way for each app (in the spirit of
keras-hub's ``run_backbone_test``): each app's test modules call these with its tiny preset
and data it generates in its real format.

- ``prepare``: the app's ingestion, then its preprocessing_fn through tft_beam;
- ``check_rejected``: a bad input stops ingestion naming the file, with nothing written;
- ``check_export``: the app's ``fit`` hook, the shared export, and every signature agreeing
  with the Keras model on the same inputs; warmup requests carry only serving features;
- ``check_tflite``: the float32 TFLite file agreeing with the served model, and the edge
  folder holding the gate's accepted files only (``check_published``);
- ``check_pipeline_run``: one LocalDagRunner run through the app's command line, asserting
  through MLMD that every component the builder declares ran, the model was blessed and
  pushed as a complete version folder, the training's energy is on the Model artifact, the
  Trainer wrote TensorBoard logs, and the TFLite files were written;
- ``check_replay``: the app's compiled Kubeflow V2 spec replayed task by task in
  subprocesses (``pipelines.replay``), blessing and pushing a model that serves.
"""

from __future__ import annotations

import glob
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import suite  # noqa: F401
from pipelines.trainer import Trained, TrainerInputs, train_and_export
from suite import examples_io
from suite.config import to_dict

# The float32 file against the served model: a classifier's argmax agrees everywhere; a
# ranker's top-k lists may swap items whose scores tie to float precision.
_FLOAT32_AGREEMENT = {False: 1.0, True: 0.99}
SIGNATURES = {"serving_default", "transform_features", "serving_raw"}
VERSION_FILES = ("saved_model.pb", "variables/variables.index", "fingerprint.pb",
                 "assets.extra/tf_serving_warmup_requests", "assets.extra/keras/model.keras",
                 "assets.extra/suite_metadata.json")


def split_files(examples_dir: str, split: str) -> list[str]:
    """The TFRecord files of one split of an ingested examples folder."""
    return sorted(glob.glob(os.path.join(examples_dir, split, "*")))


def raw_feature_spec(app, config) -> dict:
    """The app's raw feature spec (``apps.<app>.preprocessing.raw_feature_spec(config)``)."""
    return importlib.import_module(f"apps.{app.name}.preprocessing").raw_feature_spec(config)


@dataclass
class Prepared:
    """Ingested examples and the transform graph analysed on their train split."""

    root: Path
    ingested: examples_io.IngestResult
    inputs: TrainerInputs

    def files(self, split: str) -> list[str]:
        """The files of ``split``."""
        return split_files(self.ingested.examples_dir, split)


def prepare(app, config, data_path: str, root: Path) -> Prepared:
    """Ingests ``data_path`` with the app's reader and analyses its preprocessing_fn on the
    train split through tft_beam, as the pipeline's Transform does."""
    from components import transform_local

    spec = app.spec(config)
    ingested = app.ingest(data_path, config, str(root / "examples"), None)
    assert set(ingested.counts) == set(spec.splits), ingested.counts
    train_files = split_files(ingested.examples_dir, "train")
    custom = {"config": to_dict(config)}
    tft_output = transform_local.analyze(
        train_files, raw_feature_spec(app, config),
        lambda inputs: spec.preprocessing_fn(inputs, custom), str(root / "transform"))
    inputs = TrainerInputs(train_files,
                           split_files(ingested.examples_dir, spec.trainer_eval_split),
                           tft_output)
    return Prepared(root, ingested, inputs)


def check_rejected(app, config, data_path: str, out_root: Path, expected: str) -> str:
    """Ingestion of a bad input raises a ValueError whose message contains ``expected`` (a
    file name, line or field) and leaves nothing in ``out_root``; returns the message."""
    try:
        app.ingest(data_path, config, str(out_root), None)
    except ValueError as e:
        message = str(e)
    else:
        raise AssertionError(f"{app.name}: ingesting {data_path} did not fail")
    assert expected in message, message
    leftovers = [p for p in out_root.rglob("*") if p.is_file()] if out_root.exists() else []
    assert leftovers == [], leftovers
    return message


def check_export(app, config, prepared: Prepared, out_dir: Path,
                 n_examples: int = 16) -> tuple[str, Trained]:
    """Trains through the app's ``fit`` hook, exports, reloads, and checks that every
    signature agrees with the Keras model on the same eval examples."""
    import tensorflow as tf

    from serving import export, warmup

    spec = app.spec(config)
    trained = train_and_export(spec.fit, config, prepared.inputs, str(out_dir), app=app.name)
    model_dir = str(out_dir)
    for part in VERSION_FILES[:2] + VERSION_FILES[3:]:
        assert os.path.exists(os.path.join(model_dir, part)), part
    examples = examples_io.first_examples(prepared.files("eval"), n_examples)
    loaded = tf.saved_model.load(model_dir)
    assert SIGNATURES <= set(loaded.signatures)

    served = {k: v.numpy() for k, v in
              loaded.signatures["serving_default"](examples=tf.constant(examples)).items()}
    transformed = loaded.signatures["transform_features"](examples=tf.constant(examples))
    model_input = transformed[spec.model_input_key]
    keras_model = export.load_keras_model(model_dir)
    direct = keras_model(model_input, training=False)
    extra = ()
    if trained.export_spec.feature_layer:  # postprocess(outputs, that layer's output)
        import keras

        extra = (keras.Model(keras_model.inputs, keras_model.get_layer(
            trained.export_spec.feature_layer).output)(model_input, training=False),)
    postprocessed = {k: np.asarray(v) for k, v in trained.export_spec.postprocess(
        tf.convert_to_tensor(direct), *extra).items()}
    assert set(postprocessed) == set(served)
    for name, value in served.items():
        _assert_same(value, postprocessed[name], name)

    serving_spec = export.serving_feature_spec(
        prepared.inputs.transform_output.raw_feature_spec(), trained.export_spec)
    parsed = tf.io.parse_example(examples, serving_spec)
    raw_inputs = {k: (tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v)
                  for k, v in parsed.items()}
    raw = loaded.signatures["serving_raw"](**raw_inputs)
    for name, value in served.items():
        _assert_same(raw[name].numpy(), value, f"serving_raw {name}")

    logs = warmup.read_warmup_requests(model_dir)
    assert logs, "no warmup requests"
    for log in logs:
        request = log.predict_log.request
        assert request.model_spec.signature_name == "serving_default"
        for sent in tf.make_ndarray(request.inputs["examples"]):
            features = set(tf.train.Example.FromString(sent).features.feature)
            assert features <= set(trained.export_spec.serving_features), features
    assert export.load_metadata(model_dir)["app"] == app.name
    return model_dir, trained


def _assert_same(got: np.ndarray, expected: np.ndarray, name: str) -> None:
    if got.dtype.kind in "fc":
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=name)
    else:
        np.testing.assert_array_equal(got, expected, err_msg=name)


def check_tflite(app, config, prepared: Prepared, model_dir: str, edge_dir: Path, *,
                 train_examples: int = 64) -> dict:
    """Converts the exported model's Keras core to the TFLite variants (int8 calibrated on,
    a student or a pruned copy trained on, the first ``train_examples`` training examples)
    and checks the float32 file against the served model; returns the report."""
    from components.tflite_export import export_edge_models

    spec = app.spec(config)
    report = export_edge_models(
        model_dir, str(edge_dir),
        train_examples=examples_io.first_examples(prepared.files("train"), train_examples),
        eval_examples=examples_io.first_examples(prepared.files("eval"), 32),
        transform_output_dir=os.path.dirname(
            prepared.inputs.transform_output.transform_savedmodel_dir.rstrip("/")),
        label_key=spec.label_key, model_input_key=spec.model_input_key,
        edge=config.edge, **spec.tflite.export_arguments())
    float32 = report["variants"]["float32"]
    assert float32["agreement"] >= _FLOAT32_AGREEMENT[bool(spec.tflite.top_k)], float32
    check_published(report, str(edge_dir))
    return report


def check_published(report: dict, edge_dir: str) -> None:
    """The gate's verdicts are what the edge folder holds: each accepted variant's file is
    there, no rejected variant's file is; float32 (the served model's twin) is accepted and
    the variant to ship is an accepted one."""
    for variant, values in report["variants"].items():
        path = os.path.join(edge_dir, f"{variant}.tflite")
        if values["accepted"]:
            assert os.path.getsize(path) > 0 and values["path"] == path, variant
        else:
            assert not os.path.exists(path) and values["path"] is None, variant
            assert values["rejected"], variant
    assert report["variants"]["float32"]["accepted"], report["variants"]["float32"]
    assert report["variants"][report["ship"]]["accepted"]


def expected_components(app, config, workspace: Path) -> set[str]:
    """The component ids the shared builder puts into the app's pipeline."""
    from apps.base.cli import pipeline_paths
    from pipelines.builder import create_pipeline

    paths = pipeline_paths(str(workspace), app.name, str(workspace / "unused"))
    return {c.id for c in create_pipeline(app.spec(config), config, paths, with_metadata=False)
            .components}


def run_pipeline(app, args: list[str], workspace: Path, pipeline: str = "") -> tuple[int, Any]:
    """Runs ``<app> run ARGS --workspace WORKSPACE`` and reads its run of ``pipeline`` (the
    app's command by default) back from MLMD; what the command printed is
    ``summary.extra["stdout"]`` (and printed again)."""
    import contextlib
    import io

    from pipelines.results import latest_run

    cli = importlib.import_module(f"apps.{app.name}.cli")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli.main(["run", *args, "--workspace", str(workspace)])
    print(printed.getvalue())
    summary = latest_run(str(workspace / app.name / "metadata.sqlite"),
                         pipeline or app.command)
    summary.extra["stdout"] = printed.getvalue()
    return code, summary


def check_pipeline_run(app, config, code: int, summary, workspace: Path) -> None:
    """Every component ran, the model was blessed and pushed as one complete version, and
    the TFLite files and report are in the edge folder."""
    import json

    assert code == 0
    assert set(summary.states) == expected_components(app, config, workspace)
    assert set(summary.states.values()) == {"COMPLETE"}, summary.states
    assert summary.blessed is True and summary.pushed is True
    base = workspace / "serving" / "models" / config.model_name
    assert os.path.dirname(summary.pushed_destination) == str(base)
    assert os.listdir(base) == [summary.pushed_version]  # no staging folder left behind
    for part in VERSION_FILES:
        assert os.path.exists(os.path.join(summary.pushed_destination, part)), part
    # The training's energy and CO2 (CodeCarbon) are properties of the Model artifact.
    assert summary.training_energy["training_energy_kwh"] > 0, summary.training_energy
    assert summary.training_energy["training_co2_kg"] > 0
    assert summary.training_energy["training_energy_method"].startswith(("measured",
                                                                          "estimate"))
    if getattr(config, "mode", "") != "anomaly":  # fitted, not trained by epochs
        from apps.base.tensorboard import log_dirs

        runs = {n: p for n, p in log_dirs(str(workspace)).items() if n.startswith(app.name)}
        assert any(glob.glob(os.path.join(p, "**", "events.out.tfevents.*"), recursive=True)
                   for p in runs.values()), f"no TensorBoard logs: {runs}"
    edge = summary.edge_dir
    assert edge == str(workspace / "serving" / "edge" / config.model_name
                       / summary.pushed_version)
    report = json.loads(open(os.path.join(edge, "report.json")).read())
    check_published(report, edge)
    assert report["variants"]["float32"]["agreement"] >= \
        _FLOAT32_AGREEMENT[bool(app.spec(config).tflite.top_k)]
    effective = json.loads((workspace / app.name / "config.json").read_text())
    assert effective["app"] == app.name
    check_report(app, config, summary)


def check_replay(app, workspace: Path, root: Path, args: list[str] = ()) -> None:
    """Compiles the app's pipeline (``compile``) for the local pipeline root ``root`` on the
    examples an earlier run ingested into ``workspace``, and replays the spec task by task
    as Kubeflow / Vertex would run it (``pipelines.replay``): every task ran, the model was
    blessed and pushed under the spec's serving path, and the pushed model answers
    ``serving_default``."""
    import json

    import tensorflow as tf

    from components.tflite_export import read_serialized
    from pipelines.replay import replay

    examples = json.loads((workspace / app.name / "config.json").read_text())["paths"][
        "examples_dir"]
    spec_path = root / "pipeline.json"
    cli = importlib.import_module(f"apps.{app.name}.cli")
    assert cli.main(["compile", "--image", "example.com/suite:test", "--out", str(spec_path),
                     "--pipeline-root", str(root), "--examples", examples, *args]) == 0
    tasks = json.loads(spec_path.read_text())["pipelineSpec"]["root"]["dag"]["tasks"]
    done = replay(str(spec_path))
    assert set(done.tasks) == set(tasks)

    produced = [a for task in done.tasks.values() for found in task.outputs.values()
                for a in found]
    titles = {a["schemaTitle"]: a["metadata"] for a in produced}
    assert titles["tfx.ModelBlessing"]["blessed"] == 1, titles["tfx.ModelBlessing"]
    pushed = titles["tfx.PushedModel"]
    assert pushed["pushed"] == 1, pushed
    destinations = [json.loads(p["runtimeValue"]["constantValue"]["stringValue"])
                    for task in tasks.values()
                    for name, p in task.get("inputs", {}).get("parameters", {}).items()
                    if name == "push_destination"]
    base = destinations[0]["filesystem"]["base_directory"]
    assert base.startswith(str(root))
    assert pushed["pushed_destination"] == os.path.join(base, pushed["pushed_version"])

    split = sorted(d for d in os.listdir(examples) if split_files(examples, d))[0]
    records = read_serialized(split_files(examples, split), 4)
    served = tf.saved_model.load(pushed["pushed_destination"]).signatures["serving_default"]
    outputs = served(examples=tf.constant(records))
    assert outputs and all(v.shape[0] == len(records) for v in outputs.values()), outputs


CHROMIUM = "/usr/bin/chromium"  # Debian's package (`make browser` installs it)


def open_in_browser(path: str, screenshot: str) -> tuple[list[str], list]:
    """Opens the page ``path`` in headless Chromium (Playwright driving the system's
    browser); returns the console errors and, per image, (alt, loaded, natural width), and
    writes a full-page screenshot. Skips the calling test when Chromium is not installed."""
    import pytest
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not installed (Debian package chromium; `make browser`)")
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"file://{os.path.abspath(path)}")
            page.wait_for_load_state("load")
            images = page.evaluate(
                "Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
            page.screenshot(path=screenshot, full_page=True)
        finally:
            browser.close()
    return errors, images


def report_images(text: str) -> list[bytes]:
    """The PNG files embedded in a report page."""
    import base64
    import re

    return [base64.b64decode(data) for data in
            re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)]


def check_report(app, config, summary) -> None:
    """The run report has every section and its figures are real PNGs (training curves
    except for a model fitted without epochs); the pushed version holds the same report, the
    model card, whose metrics are TFMA's with intervals around them, and the data profile
    that ``suite drift`` reads."""
    import io
    import json

    from PIL import Image

    from components.evaluation_results import evaluation_metrics
    from components.report_html import SECTIONS

    printed = summary.extra["stdout"].splitlines()
    assert f"run report:       {summary.report_path}" in printed
    text = open(summary.report_path).read()
    for key in SECTIONS:
        assert f'<section id="{key}">' in text, key
    images = report_images(text)
    assert images and all(Image.open(io.BytesIO(png)).size[0] > 50 for png in images)
    trained = getattr(config, "mode", "") != "anomaly"
    assert ('alt="training curves"' in text) == trained
    from components.evaluation_results import plots

    spec = app.spec(config).report
    plot = plots(summary.evaluation_uri).get("overall", {})
    for alt, shown in (("confusion matrix", "confusion_matrix" in plot),
                       ("ROC and PR", "thresholds" in plot),
                       ("by history length", bool(spec.length_feature)),
                       ("explanation", bool(spec.explain))):
        assert (f'alt="{alt}"' in text) == shown, alt
    assert open(summary.pushed_report).read() == text
    assets = os.path.dirname(summary.pushed_report)
    assert f"model card:       {os.path.join(assets, 'model_card.md')}" in printed
    card = json.loads(open(os.path.join(assets, "model_card.json")).read())
    assert os.path.getsize(os.path.join(assets, "model_card.md")) > 500
    assert card["model"]["family"] and card["model"]["version"] == summary.pushed_version
    tfma = evaluation_metrics(summary.evaluation_uri)
    assert card["metrics"]["overall"] == tfma["overall"]
    headline = card["metrics"]["headline"]
    intervals = card["metrics"]["confidence_intervals"]
    if app.spec(config).report.statistics:
        assert intervals["overall"]["value"] == tfma["overall"][headline]
        for name, entry in intervals.items():
            if entry["ci95"] is None:  # undefined on every resample (one class only)
                continue
            low, high = entry["ci95"]
            assert low - 1e-9 <= entry["value"] <= high + 1e-9, (name, entry)
            assert entry["value"] == tfma[name.split(" (")[0]][headline]
    for part in ("data/schema.pbtxt", "data/train_statistics.pb"):
        assert os.path.getsize(os.path.join(assets, part)) > 0, part


def encode_image(array: np.ndarray, fmt: str, mode: str | None = None, **options) -> bytes:
    """``array`` encoded as a ``fmt`` (PNG, JPEG, BMP) file's bytes, converted to ``mode``
    first when given; ``options`` go to PIL's save (e.g. quality)."""
    import io  # noqa: PLC0415

    from PIL import Image  # noqa: PLC0415

    image = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def check_image_classifier_learns(model) -> None:
    """An image classifier [N, 32, 32, 1] -> 2 classes: its first layer standardises each
    image (a gain on the exposure changes nothing), and 15 epochs on 32 images where a
    bright patch marks the positives at least halve its loss. Build the model after
    ``keras.utils.set_random_seed``, so the outcome does not depend on the tests before."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 0.4, (32, 32, 32, 1)).astype(np.float32)
    y = np.arange(32) % 2
    x[y == 1, 4:12, 4:12] = 0.9
    np.testing.assert_allclose(model(x).numpy(), model(x * 0.5).numpy(), atol=1e-4)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=15, batch_size=8, verbose=0)
    assert model.evaluate(x, y, verbose=0) < first * 0.5


def trained_window_cnn(n: int, n_train: int, *, filters: int = 8, dense: int = 16,
                       batch_norm: bool = False, epochs: int = 8):
    """``(model, x, labels)``: a small 1D CNN fitted on the first ``n_train`` of ``n``
    windows of 64 samples whose class is which third carries a raised level (learnt in a
    few epochs, so that its answers vary across examples): what the edge tests convert,
    quantize and prune."""
    import keras  # noqa: PLC0415

    keras.utils.set_random_seed(0)
    inputs = keras.Input((64, 1))
    h = keras.layers.Conv1D(filters, 5, padding="same", activation="relu")(inputs)
    if batch_norm:
        h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Flatten()(keras.layers.MaxPooling1D(2)(h))  # position matters
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Dense(dense, "relu")(h))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, n)
    x = rng.normal(0, 0.5, size=(n, 64, 1)).astype(np.float32)
    for i, label in enumerate(labels):
        x[i, label * 21:(label + 1) * 21] += 2.0
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x[:n_train], labels[:n_train], epochs=epochs, batch_size=32, verbose=0)
    return model, x, labels
