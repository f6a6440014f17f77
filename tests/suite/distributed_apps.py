"""Every app's trainer under a tf.distribute strategy, run as a fresh process by
``tests/suite/test_distribute.py`` (a CPU's logical devices and a cluster's collective ops
must be set up before TensorFlow runs anything, so neither can happen inside pytest).

    python -m tests.suite.distributed_apps mirrored ROOT
        splits the CPU into two logical devices; for every app: generated data -> ingest
        -> TFT analysis (kept under ROOT/<app>/ for the workers), then the app's ``fit``
        hook (tiny preset, one epoch) under MirroredStrategy over the two devices, and the
        shared export to ROOT/mirrored/<app>;
    python -m tests.suite.distributed_apps worker ROOT
        one worker of the cluster TF_CONFIG names: for every app, the same ``fit`` hook on
        the kept inputs under MultiWorkerMirroredStrategy, exported to
        ROOT/multi_worker/<app> by the chief (to a folder of its own by the other worker,
        which saves too).

Every ``keras.Model.fit`` of a run records, when it ends, what the test compares: under
MirroredStrategy the largest difference between the two replicas' copies of every model
and optimizer variable; under MultiWorkerMirroredStrategy the worker's values of them
(ROOT/multi_worker/<app>-fit<k>.<task>.npz). The chief loads each export and calls
``serving_default`` on eval examples. What a run found goes to ROOT/<mode>.<task>.json.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
from pathlib import Path

APPS = ("sensor_vibration", "medical_scans", "clickstreams", "speech", "defect_images")
SERVED_EXAMPLES = 4


def _raw_data(name: str, root: str) -> str:
    """Small generated data of the app in its real format."""
    data = importlib.import_module(f"apps.{name}.data")
    raw = os.path.join(root, "raw")
    if name == "sensor_vibration":
        return data.generate_synthetic(raw, classes=("Normal", "IR007", "OR021"), loads=(0,),
                                       n_samples=4000)
    if name == "medical_scans":
        return data.generate_synthetic(raw, "folders", n_per_class=12, size=40)
    if name == "clickstreams":
        os.makedirs(raw, exist_ok=True)
        return data.generate_synthetic(os.path.join(raw, "events.tsv"), n_sessions=300,
                                       n_items=30, n_clusters=3)
    if name == "speech":
        return data.generate_synthetic(raw, "fsdd", speakers=3, per_speaker=4)
    return data.generate_synthetic(raw, n_per_class=10, size=40)


def _tiny(name: str):
    """The app's tiny preset for one epoch in batches of 8 (32 for the many short
    clickstream examples), with the smaller data config of its own tests."""
    from apps import registry
    from suite.config import replace_path

    config = registry.load(name).config_class.preset("tiny")
    config = replace_path(replace_path(config, "train.epochs", 1), "train.batch_size",
                          32 if name == "clickstreams" else 8)
    if name == "sensor_vibration":
        config = replace_path(config, "data.classes", ["Normal", "IR007", "OR021"])
    if name == "clickstreams":
        config = replace_path(replace_path(config, "data.max_history", 4),
                              "data.min_item_count", 2)
    return config


def with_distribute(config, kind: str):
    """``config`` with ``train.distribute`` set to ``kind``."""
    from suite.config import replace_path

    return replace_path(config, "train.distribute", kind)


class _Recorder:
    """Makes every keras.Model.fit end by recording the model's and optimizer's
    variables."""

    def __init__(self, mode: str, out_dir: str, task: str):
        self.mode, self.out_dir, self.task = mode, out_dir, task
        self.app, self.fits = "", []

    def install(self) -> None:
        import keras

        recorder, fit = self, keras.Model.fit

        class Record(keras.callbacks.Callback):
            def on_train_end(self, logs=None):
                recorder.record(self.model)

        def recorded_fit(model, *args, callbacks=None, **kwargs):
            return fit(model, *args, callbacks=[*(callbacks or []), Record()], **kwargs)

        keras.Model.fit = recorded_fit

    def record(self, model) -> None:
        import numpy as np

        strategy = model.distribute_strategy
        variables = [*model.weights, *model.optimizer.variables]
        entry = {"strategy": type(strategy).__name__,
                 "replicas": int(strategy.num_replicas_in_sync), "variables": len(variables)}
        if self.mode == "mirrored":
            worst, mirrored = (0.0, ""), 0
            for v in variables:
                parts = getattr(getattr(v, "value", v), "values", ())
                if len(parts) > 1:
                    mirrored += 1
                    first = np.asarray(parts[0], np.float64)
                    for part in parts[1:]:
                        worst = max(worst, (float(np.max(np.abs(
                            np.asarray(part, np.float64) - first), initial=0.0)), v.path))
            entry.update(mirrored_variables=mirrored, max_replica_difference=worst[0],
                         most_different=worst[1])
        else:
            path = os.path.join(self.out_dir, f"{self.app}-fit{len(self.fits)}.{self.task}.npz")
            np.savez(path, *[np.asarray(v) for v in variables])
            entry["weights"] = path
        self.fits.append(entry)


def _served(export_dir: str, eval_files: list[str]) -> dict:
    """What the export's serving_default returns for a few eval examples: each output's
    shape, and whether every float in them is finite."""
    import numpy as np
    import tensorflow as tf

    from suite.examples_io import first_examples

    examples = tf.constant(first_examples(eval_files, SERVED_EXAMPLES))
    outputs = tf.saved_model.load(export_dir).signatures["serving_default"](examples=examples)
    values = {k: v.numpy() for k, v in outputs.items()}
    return {"examples": int(examples.shape[0]),
            "shapes": {k: list(v.shape) for k, v in values.items()},
            "finite": all(bool(np.isfinite(v).all()) for v in values.values()
                          if v.dtype.kind == "f")}


def _run(mode: str, root: str) -> None:
    # oneDNN's CPU convolutions return their input for an empty batch (TF 2.16), which a
    # replica's share of a last validation batch can be: the plain kernels here.
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
    task = "local"
    if mode == "mirrored":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    else:
        spec = json.loads(os.environ["TF_CONFIG"])["task"]
        task = f"{spec['type']}-{spec['index']}"
    from suite.quiet import quiet

    quiet()
    from apps import registry
    from pipelines.trainer import TrainerInputs, train_and_export
    from suite import distribute, energy
    from suite.config import from_dict, to_dict

    # CodeCarbon's tracker (seconds per run) is not what these runs check.
    energy.measure = lambda config=None: contextlib.nullcontext({})
    out_dir = os.path.join(root, "mirrored" if mode == "mirrored" else "multi_worker")
    os.makedirs(out_dir, exist_ok=True)
    recorder = _Recorder(mode, out_dir, task)
    recorder.install()
    summary = {}
    for name in APPS:
        app, app_root = registry.load(name), os.path.join(root, name)
        if mode == "mirrored":
            from tests import harness

            config = _tiny(name)
            prepared = harness.prepare(app, config, _raw_data(name, app_root), Path(app_root))
            config, inputs = app.with_ingested(config, prepared.ingested), prepared.inputs
            with open(os.path.join(app_root, "inputs.json"), "w") as f:
                json.dump({"train_files": inputs.train_files, "eval_files": inputs.eval_files,
                           "transform_dir": os.path.join(app_root, "transform"),
                           "config": to_dict(config)}, f)
        else:
            import tensorflow_transform as tft

            with open(os.path.join(app_root, "inputs.json")) as f:
                record = json.load(f)
            config = from_dict(app.config_class, record["config"])
            inputs = TrainerInputs(record["train_files"], record["eval_files"],
                                   tft.TFTransformOutput(record["transform_dir"]))
        recorder.app, recorder.fits = name, []
        export_dir = distribute.task_output_dir(os.path.join(out_dir, name))
        fit = importlib.import_module(f"apps.{name}.trainer").fit
        train_and_export(fit, with_distribute(config, mode.replace("worker", "multi_worker")),
                         inputs, export_dir, app=name)
        summary[name] = {"fits": recorder.fits, "export_dir": export_dir,
                         "served": _served(export_dir, inputs.eval_files)
                         if distribute.is_chief() else None}
        print(f"{mode} {task} {name}: done", flush=True)
    with open(os.path.join(root, f"{mode}.{task}.json"), "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    _run(sys.argv[1], sys.argv[2])
