"""The one TFX Trainer entry point of the suite: the same ``run_fn`` for every app.

It unpacks ``fn_args``, hands the app's ``fit`` hook the example files and the transform
graph, and writes what ``fit`` returns through the shared serving export, with warmup
requests made of real examples cut down to what a client sends, and the energy and CO2 the
training took (CodeCarbon, ``suite.energy``) in the export's metadata. An app's ``fit`` only
builds its datasets and calls its plain ``train()``, which runs the same way without TFX
(tests, benchmarks, debugging).

The app's ``fit`` and config class travel in the Trainer's ``custom_config`` as dotted
paths (see ``pipelines.builder``), beside the app config itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import suite  # noqa: F401  (Keras policy before TensorFlow)
from suite import examples_io, files
from suite.config import config_from_custom, import_dotted, to_dict

WARMUP_EXAMPLES = 8


@dataclass(frozen=True)
class TrainerInputs:
    """What an app's ``fit`` gets: raw example files and the TFT transform graph."""

    train_files: list[str]
    # The Trainer's eval split: the app's validation split where it has one (early stopping,
    # a decision threshold), so nothing the Evaluator blesses on is seen in training.
    eval_files: list[str]
    transform_output: Any  # tft.TFTransformOutput
    log_dir: str | None = None  # TensorBoard logs

    def dataset(self, files: Sequence[str], batch_size: int, feature: str, label: str):
        """(feature, label) batches of ``files`` through the transform graph, cached."""
        return examples_io.transformed_dataset(files, self.transform_output, batch_size,
                                               feature, label)


@dataclass
class Trained:
    """What an app's ``fit`` returns: the model, how it is served, and what the export
    records beside it in ``assets.extra/suite_metadata.json``."""

    model: Any  # keras.Model
    export_spec: Any  # serving.export.ExportSpec
    metadata: Mapping[str, Any] = field(default_factory=dict)


def serving_examples(serialized: Sequence[bytes], features: Sequence[str]) -> list[bytes]:
    """Examples cut down to ``features``: what a serving client sends (never the label)."""
    import tensorflow as tf  # noqa: PLC0415

    out = []
    for data in serialized:
        source = tf.train.Example.FromString(data).features.feature
        kept = {name: source[name] for name in features if name in source}
        out.append(tf.train.Example(features=tf.train.Features(feature=kept))
                   .SerializeToString())
    return out


def train_and_export(fit: Callable, config: Any, inputs: TrainerInputs, output_dir: str, *,
                     app: str) -> Trained:
    """Runs ``fit`` and writes the serving export to ``output_dir`` (used by ``run_fn`` and
    by anything that trains an app outside TFX)."""
    from serving.export import export_serving_model  # noqa: PLC0415
    from suite import energy  # noqa: PLC0415

    with energy.measure(config.energy) as used:
        trained = fit(inputs, config)
    # The eval split may be empty (e.g. no validation split): warm up on training examples.
    warmup = (examples_io.first_examples(inputs.eval_files, WARMUP_EXAMPLES)
              or examples_io.first_examples(inputs.train_files, WARMUP_EXAMPLES))
    export_serving_model(
        trained.model, inputs.transform_output, output_dir, trained.export_spec,
        model_name=config.model_name,
        warmup_examples=serving_examples(warmup, trained.export_spec.serving_features),
        metadata={"app": app, "config": to_dict(config), **trained.metadata,
                  energy.METADATA_KEY: used})
    return trained


def run_fn(fn_args) -> None:
    """TFX Trainer entry point of every app."""
    import tensorflow_transform as tft  # noqa: PLC0415

    from suite import distribute  # noqa: PLC0415

    custom = fn_args.custom_config or {}
    config = config_from_custom(import_dotted(custom["config_class"]), custom)
    # A multi-worker strategy must exist before TensorFlow runs an op; each worker other
    # than the chief exports to a folder of its own (nobody reads it).
    distribute.plan(config.train)
    inputs = TrainerInputs(
        train_files=examples_io.expand_files(fn_args.train_files),
        eval_files=examples_io.expand_files(fn_args.eval_files),
        transform_output=tft.TFTransformOutput(fn_args.transform_output),
        log_dir=os.path.join(fn_args.model_run_dir, "logs"))
    files.makedirs(fn_args.model_run_dir)  # the ModelRun artifact's folder
    train_and_export(import_dotted(custom["fit"]), config, inputs,
                     distribute.task_output_dir(fn_args.serving_model_dir), app=custom["app"])
