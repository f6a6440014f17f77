"""Shared test setup: the suite's Keras policy before anything imports TensorFlow, and one
real pushed sensor-vibration model for the tests that serve one.

The model is built once per test session (not once per module: training and TFT analysis
dominate the run time on a small machine) the way the pipeline builds it: generated
recordings -> ingest -> TFT analysis -> one epoch of training -> serving export with warmup
requests -> atomic push into ``<repository>/sensor_vibration/<version>/``.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import shutil
from dataclasses import dataclass

import pytest

import suite  # noqa: F401

CLASSES = ("Normal", "IR007", "OR021")
MODEL = "sensor_vibration"


@dataclass(frozen=True)
class PushedModel:
    """A repository holding one pushed vibration model, and what it was built from."""

    repository: str  # <repository>/sensor_vibration/<version>/
    version: int
    export_dir: str  # the Trainer-style export that was pushed
    transform_dir: str  # its TFT output
    examples_dir: str  # the ingested examples: <split>/data.tfrecord
    raw_dir: str  # generated recordings (manifest + .mat files)
    eval_examples: list[bytes]  # serialized raw tf.Examples of the eval split
    window: int
    classes: tuple[str, ...]

    @property
    def base_path(self) -> str:
        return os.path.join(self.repository, MODEL)

    @property
    def version_dir(self) -> str:
        return os.path.join(self.base_path, str(self.version))


@pytest.fixture(scope="session")
def pushed_model(tmp_path_factory) -> PushedModel:
    from apps.sensor_vibration import data, preprocessing, trainer
    from apps.sensor_vibration.config import VibrationConfig
    from apps.sensor_vibration.features import LABEL, SIGNAL_XF
    from components import transform_local
    from serving.versions import push_atomically
    from serving import export
    from suite.config import to_dict
    from suite.examples_io import first_examples, transformed_dataset

    tiny = VibrationConfig.preset("tiny")
    config = dataclasses.replace(tiny, data=dataclasses.replace(tiny.data, classes=CLASSES),
                                 train=dataclasses.replace(tiny.train, epochs=1))
    root = tmp_path_factory.mktemp("serving-model")
    raw = data.generate_synthetic(str(root / "raw"), classes=CLASSES, loads=(0,),
                                  n_samples=4000)
    ingested = data.ingest(raw, config.data, str(root / "examples"))
    train_files = glob.glob(os.path.join(ingested.examples_dir, "train", "*"))
    eval_files = glob.glob(os.path.join(ingested.examples_dir, "eval", "*"))
    config_dict = to_dict(config)
    tft_output = transform_local.analyze(
        train_files, preprocessing.raw_feature_spec(config),
        lambda inputs: preprocessing.preprocessing_fn(inputs, {"config": config_dict}),
        str(root / "transform"))
    model = trainer.train(transformed_dataset(train_files, tft_output, 32, SIGNAL_XF, LABEL),
                          None, config, verbose=0)
    export_dir = export.export_serving_model(
        model, tft_output, str(root / "export"), trainer.export_spec(config), model_name=MODEL,
        warmup_examples=first_examples(eval_files, 3),
        metadata={"app": MODEL, "config": config_dict})
    repository = root / "models"
    version, pushed = push_atomically(export_dir, str(repository / MODEL))
    assert pushed
    return PushedModel(str(repository), int(version), export_dir, str(root / "transform"),
                       ingested.examples_dir, raw, first_examples(eval_files, 16),
                       config.data.window, CLASSES)


@pytest.fixture
def push_copy(pushed_model, tmp_path):
    """Pushes a copy of the model as the next version under a base path; returns it. The
    copy carries a marker file, so it is not the identical model the pusher never pushes
    twice."""
    from serving.versions import push_atomically

    def push(base_path: str) -> int:
        copy = tmp_path / f"copy-{len(list(tmp_path.iterdir()))}"
        shutil.copytree(pushed_model.export_dir, copy)
        (copy / "assets.extra" / "push_marker.txt").write_text(f"copy of {base_path}\n")
        version, pushed = push_atomically(str(copy), base_path)
        assert pushed
        return int(version)

    return push
