"""The one pipeline builder: an app declares what differs, the builder does the rest.

ImportExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator -> Transform -> Trainer
-> latest blessed model resolver -> Evaluator (value and change thresholds) -> serving
validation (load + warmup requests over gRPC) -> Pusher (atomic, gated on both blessings)
-> TFLite export of the pushed model, gated variant by variant -> the run report (and, when
pushed, the model card and the data profile in the pushed version). Extra components are
composed in by the caller; runners (local, Beam, Kubeflow V2) change the runtime, never the
graph.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence

import suite
from suite.config import to_dict

SHARED_PACKAGES = ("suite", "blocks", "components", "pipelines", "serving")
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class TFLiteSpec:
    """How the TFLite export checks an app's bare model; the defaults suit a classifier."""

    # 0: a classifier (argmax agreement, accuracy); k: a ranker (top-k agreement, and
    # recall@k of the label as an output index).
    top_k: int = 0
    optional_variants: tuple[str, ...] = ()  # may fail to convert: recorded as skipped
    vocabularies: tuple[str, ...] = ()  # TFT vocabularies copied beside the .tflite files
    # A layer of the Keras model: the .tflite files start there, and take its input. The
    # layers before it are the signal-processing front end a device computes with its own
    # DSP library (a spectrum has a dynamic range no int8 tensor holds). "": the whole model.
    head_from: str = ""
    front_end: str = ""  # what the device computes before head_from, for the edge report
    # "module:function" building the app's small student model from the model the files
    # carry (same input and output), for edge.distill (serving.distill); "": none.
    student: str = ""

    def export_arguments(self) -> dict:
        """These fields as ``components.tflite_export.export_edge_models`` arguments."""
        return {"top_k": self.top_k, "optional_variants": self.optional_variants,
                "vocabularies": self.vocabularies, "head_from": self.head_from,
                "front_end_text": self.front_end, "student": self.student}


@dataclass(frozen=True)
class ReportSpec:
    """What an app's run report and model card say that the shared step cannot know."""

    explain: str = ""  # explanation samples: components.explain_samples.KINDS, "" for none
    # TFMA metric name -> the same figure in numpy, (raw labels, served prediction) ->
    # float, recomputed on bootstrap resamples of the eval examples for the model card's
    # confidence intervals (and, with length_feature, by history length).
    statistics: tuple[tuple[str, Callable], ...] = ()
    length_feature: str = ""  # a raw list feature whose length groups a ranker's figures
    intended_use: str = ""
    not_for: str = ""
    split_rule: str = ""
    decision_rule: str = ""  # how a prediction becomes a decision, when no threshold is kept
    limitations: tuple[str, ...] = ()


@dataclass(frozen=True)
class AppSpec:
    """What an app contributes to the shared pipeline.

    preprocessing_fn, fit (``pipelines.trainer``'s hook: TrainerInputs, config -> Trained)
    and config_class live in the installed package; the pipeline passes them by dotted path.
    eval_config builds a tfma.EvalConfig from the app config.
    """

    name: str  # pipeline name: lower case, digits and dashes (Kubeflow accepts no other)
    package: str  # the app's package (apps.<name>): its sources are hashed into the code version
    preprocessing_fn: Callable
    fit: Callable
    config_class: type
    eval_config: Callable[[Any], Any]
    label_key: str
    model_input_key: str  # transformed feature the bare Keras model takes (TFLite input)
    model_name: Callable[[Any], str] = field(default=lambda config: config.model_name)
    tflite: TFLiteSpec = field(default_factory=TFLiteSpec)
    # Folders of the ingested examples, one split each; "train" and "eval" are required
    # (the Evaluator scores "eval"). The Trainer's eval split may be a third one, e.g. a
    # validation split for early stopping or a decision threshold, so that nothing the
    # Evaluator blesses on was seen while training.
    splits: tuple[str, ...] = ("train", "eval")
    trainer_eval_split: str = "eval"
    headline_metric: str = ""  # TFMA name of the figure that sums a model up
    report: ReportSpec = field(default_factory=ReportSpec)


def dotted_path(fn: Callable) -> str:
    """``package.module.name`` of a module-level function or class."""
    if "<" in fn.__qualname__ or "." in fn.__qualname__:
        raise ValueError(f"{fn!r} must be a module-level function or class to be passed by "
                         "dotted path")
    return f"{fn.__module__}.{fn.__qualname__}"


def code_version(app: AppSpec) -> str:
    """Package version + a hash of the app's and the shared packages' Python sources, so a
    changed line of code never reuses a cached Transform, Trainer or export."""
    digest = hashlib.sha256()
    for package in (app.package, *SHARED_PACKAGES):
        folder = REPO_ROOT.joinpath(*package.split("."))
        for path in sorted(folder.rglob("*.py")):
            digest.update(str(path.relative_to(REPO_ROOT)).encode())
            digest.update(path.read_bytes())
    return f"{suite.__version__}+{digest.hexdigest()[:12]}"


def report_parameters(app: AppSpec, config: Any) -> str:
    """The app's ReportSpec as the report step's JSON parameter (callables by dotted path),
    with the model family the config resolves to (a ``kind`` property where the app has one,
    e.g. a mode's default family)."""
    spec = app.report
    family = getattr(config, "kind", None) or getattr(getattr(config, "model", None), "kind", "")
    return json.dumps({
        "family": family,
        # The model card's intervals are of the first statistic where the app declares any.
        "headline": spec.statistics[0][0] if spec.statistics else app.headline_metric,
        "explain": spec.explain,
        "statistics": {name: dotted_path(fn) for name, fn in spec.statistics},
        "length_feature": spec.length_feature, "intended_use": spec.intended_use,
        "not_for": spec.not_for, "split_rule": spec.split_rule,
        "decision_rule": spec.decision_rule, "limitations": list(spec.limitations)})


@dataclass(frozen=True)
class PipelinePaths:
    """Where a pipeline run reads and writes."""

    examples_dir: str  # ingested tf.Examples: one subfolder per split (train/, eval/, ...)
    pipeline_root: str
    metadata_path: str  # SQLite ML Metadata store (local runs)
    serving_base: str  # TF Serving model base paths: <serving_base>/<model_name>/<version>/
    edge_base: str  # TFLite files: <edge_base>/<model_name>/<version>/


def create_pipeline(
    app: AppSpec,
    config: Any,
    paths: PipelinePaths,
    *,
    extra_components: Sequence[Any] = (),
    beam_pipeline_args: Sequence[str] = (),
    enable_cache: bool = True,
    with_metadata: bool = True,
    data_only: bool = False,
):
    """Returns the TFX pipeline of ``app`` for ``config``; with ``data_only``, its data steps
    alone (ExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator -> Transform), e.g.
    to time them on each Beam engine (benchmarks/beam_engines.py)."""
    from tfx.components import (
        Evaluator, ExampleValidator, ImportExampleGen, Pusher, SchemaGen, StatisticsGen,
        Trainer, Transform)
    from tfx.dsl.components.base import executor_spec
    from tfx.dsl.components.common.resolver import Resolver
    from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
        LatestBlessedModelStrategy)
    from tfx.orchestration import metadata, pipeline
    from tfx.proto import example_gen_pb2, pusher_pb2, trainer_pb2
    from tfx.types import Channel, standard_artifacts

    from components.atomic_pusher import AtomicPushExecutor
    from components.run_report import RunReportStep
    from components.serving_validator import ServingValidator
    from components.tflite_export import TFLiteExport
    from components.trainer_executor import EnergyRecordingExecutor

    from pipelines import trainer as shared_trainer
    from serving import drift

    model_name = app.model_name(config)
    custom_config = {"config": to_dict(config), "code_version": code_version(app),
                     "app": app.package.rpartition(".")[2], "fit": dotted_path(app.fit),
                     "config_class": dotted_path(app.config_class)}

    example_gen = ImportExampleGen(
        input_base=paths.examples_dir,
        input_config=example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name=split, pattern=f"{split}/*")
            for split in app.splits]))
    # The histograms `suite drift` compares serving traffic against (serving.drift).
    statistics_gen = StatisticsGen(
        examples=example_gen.outputs["examples"],
        stats_options=drift.statistics_options(config.drift.histogram_buckets))
    schema_gen = SchemaGen(statistics=statistics_gen.outputs["statistics"],
                           infer_feature_shape=True)
    example_validator = ExampleValidator(statistics=statistics_gen.outputs["statistics"],
                                         schema=schema_gen.outputs["schema"])
    # The Trainer applies the transform graph in its input pipeline (and serving does the
    # same), so transformed examples need not be materialised.
    transform = Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=dotted_path(app.preprocessing_fn),
        materialize=False,
        custom_config=custom_config)

    def assemble(components):
        return pipeline.Pipeline(
            pipeline_name=app.name,
            pipeline_root=paths.pipeline_root,
            components=[*components, *extra_components],
            enable_cache=enable_cache,
            metadata_connection_config=(
                metadata.sqlite_metadata_connection_config(paths.metadata_path)
                if with_metadata else None),
            beam_pipeline_args=list(beam_pipeline_args),
        )

    data_steps = [example_gen, statistics_gen, schema_gen, example_validator, transform]
    if data_only:
        return assemble(data_steps)
    trainer = Trainer(
        run_fn=dotted_path(shared_trainer.run_fn),
        examples=example_gen.outputs["examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=trainer_pb2.TrainArgs(splits=["train"]),
        eval_args=trainer_pb2.EvalArgs(splits=[app.trainer_eval_split]),
        custom_config=custom_config,
        custom_executor_spec=executor_spec.ExecutorClassSpec(EnergyRecordingExecutor))
    baseline = Resolver(
        strategy_class=LatestBlessedModelStrategy,
        model=Channel(type=standard_artifacts.Model),
        model_blessing=Channel(type=standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    evaluator = Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"],
        eval_config=app.eval_config(config))
    # Loads the candidate in the serving stack and replays its warmup requests over gRPC:
    # a model that blesses but cannot serve is never pushed.
    serving_validator = ServingValidator(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        model_name=model_name)
    pusher = Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        infra_blessing=serving_validator.outputs["blessing"],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(
                base_directory=os.path.join(paths.serving_base, model_name))),
        custom_executor_spec=executor_spec.ExecutorClassSpec(AtomicPushExecutor))
    tflite = TFLiteExport(
        pushed_model=pusher.outputs["pushed_model"],
        examples=example_gen.outputs["examples"],
        transform_graph=transform.outputs["transform_graph"],
        edge_base=os.path.join(paths.edge_base, model_name),
        label_key=app.label_key,
        model_input_key=app.model_input_key,
        top_k=app.tflite.top_k,
        optional_variants=",".join(app.tflite.optional_variants),
        vocabularies=",".join(app.tflite.vocabularies),
        head_from=app.tflite.head_from,
        front_end=app.tflite.front_end,
        student=app.tflite.student,
        edge=json.dumps(to_dict(config.edge)),
        code_version=custom_config["code_version"])

    report = RunReportStep(
        examples=example_gen.outputs["examples"],
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_gen.outputs["schema"],
        anomalies=example_validator.outputs["anomalies"],
        model=trainer.outputs["model"],
        model_run=trainer.outputs["model_run"],
        evaluation=evaluator.outputs["evaluation"],
        blessing=evaluator.outputs["blessing"],
        pushed_model=pusher.outputs["pushed_model"],
        edge_models=tflite.outputs["edge_models"],
        app=custom_config["app"],
        model_name=model_name,
        config=json.dumps(custom_config["config"]),
        spec=report_parameters(app, config),
        code_version=custom_config["code_version"],
        model_input_key=app.model_input_key,
        head_from=app.tflite.head_from,
        examples_dir=paths.examples_dir).with_id("RunReport")

    return assemble([*data_steps, trainer, baseline, evaluator, serving_validator, pusher,
                     tflite, report])
