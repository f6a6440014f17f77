"""An app of the suite is a declaration: what differs from the other apps.

An app subclasses ``App`` in its ``app.py`` and fills in its names, its config class, its
data formats and model families, and the hooks below; the shared command line
(``apps.base.cli``) owns ``run``, ``generate``, ``compile``, ``main``, the run summary's
frame, predict-through-a-server plumbing and the error convention, and the shared pipeline
builder owns the pipeline. The app's ``cli.py`` holds its help text and its app-only
commands (predict, explain, ...).

``app.py`` must import nothing heavy at module level (no TensorFlow or TFX): ``--help`` and
``suite apps`` read the declaration and must answer at once. Hooks import what they need.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

Progress = Callable[[str], None]


class App:
    """The declaration of one app. Subclasses set the class attributes and override the
    hooks whose default does not fit."""

    name: str = ""  # Python name: the package apps.<name> and the default served model name
    command: str = ""  # command-line name, e.g. "sensor-vibration"; also the pipeline name
    about: str = ""  # one line for `suite apps`
    config_class: type = object  # the root config (a suite.config.AppConfig dataclass)
    formats: tuple[str, ...] = ()  # --format choices (data.format); empty: no --format
    models: tuple[str, ...] = ()  # --model choices (model.kind); empty: no --model
    modes: tuple[str, ...] = ()  # --mode choices (mode); empty: no --mode
    # The evaluation figure that sums a run up (``suite demo``): TFMA metric name in the
    # overall slice, and how a person calls it.
    headline_metric: tuple[str, str] = ("", "")
    data_help: str = "input data (default: generate demo data)"
    data_metavar: str = "PATH"
    pipeline_steps: str = ("ExampleGen, statistics, schema, validation, transform, training, "
                           "evaluation, serving check, push, TFLite, report")

    # -- configuration ---------------------------------------------------------------------

    def add_config_arguments(self, parser: argparse.ArgumentParser) -> None:
        """App-only configuration arguments of ``run`` and ``compile`` (beside --preset,
        --format, --model, --epochs and --set, which every app has)."""

    def overrides(self, args: argparse.Namespace) -> dict[str, Any]:
        """Dotted config field -> value from the app-only arguments (None keeps a field)."""
        del args
        return {}

    def with_model(self, config: Any, kind: str) -> Any:
        """``config`` with another model family (``--model``)."""
        return dataclasses.replace(config, model=dataclasses.replace(config.model, kind=kind))

    # -- data ------------------------------------------------------------------------------

    def demo_data(self, folder: str, config: Any, progress: Progress) -> str:
        """Generates demo data under ``folder`` (when not there yet); returns what to ingest."""
        raise NotImplementedError

    def add_generate_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Options of ``generate`` beside --out, --format and --seed."""

    def generate(self, args: argparse.Namespace) -> str:
        """Writes generated data for ``generate``; returns where."""
        raise NotImplementedError

    def ingest(self, path: str, config: Any, out_root: str, progress: Progress):
        """Validates the raw data and writes the examples; returns a
        ``suite.examples_io.IngestResult``. By default ``apps.<name>.data.ingest`` on the
        config's ``data`` part."""
        data = importlib.import_module(f"apps.{self.name}.data")
        return data.ingest(path, config.data, out_root, progress=progress)

    def with_ingested(self, config: Any, ingested) -> Any:
        """The config completed from what ingestion measured (e.g. baselines to beat)."""
        del ingested
        return config

    def ingested_lines(self, ingested) -> list[str]:
        """What a person should know about the ingested data before the pipeline runs."""
        del ingested
        return []

    # -- pipeline and results --------------------------------------------------------------

    def spec(self, config: Any):
        """The app's ``pipelines.builder.AppSpec`` for ``config`` (imports the pipeline
        pieces): ``pipeline_spec`` with the app's eval config and keys."""
        raise NotImplementedError

    def pipeline_spec(self, **fields: Any):
        """The AppSpec of this app: the pipeline named after its command (unless ``fields``
        name another, e.g. for a mode with models of its own), its
        ``apps.<name>.preprocessing.preprocessing_fn``, ``apps.<name>.trainer.fit`` and config
        class, and ``fields`` (eval_config, label_key, model_input_key, splits, tflite...)."""
        from pipelines.builder import AppSpec

        package = f"apps.{self.name}"
        return AppSpec(**{
            "name": self.command, "package": package,
            "preprocessing_fn": importlib.import_module(
                f"{package}.preprocessing").preprocessing_fn,
            "fit": importlib.import_module(f"{package}.trainer").fit,
            "config_class": self.config_class, "headline_metric": self.headline_metric[0],
            **fields})

    def metric_lines(self, metrics: dict[str, dict[str, float]], config: Any,
                     ingested) -> list[str]:
        """Lines of the run summary from the Evaluator's metrics (slice -> name -> value)."""
        del metrics, config, ingested
        return []

    def pushed_lines(self, pushed_dir: str) -> list[str]:
        """Extra lines about a pushed model (e.g. its decision threshold)."""
        del pushed_dir
        return []


def classifier_metric_lines(metrics: dict[str, dict[str, float]], classes, unit: str, *,
                            width: int = 18, skip: str | None = None,
                            order: Callable[[str], Any] | None = None) -> list[str]:
    """Run-summary lines of a classifier: each slice's accuracy and example count (``unit``:
    windows, clips...), and after the overall line each class's recall. Slices whose name
    starts with ``skip`` are left out; ``order`` sorts the slice names."""
    lines = []
    for name in sorted(metrics, key=order):
        if skip and name.startswith(skip):
            continue
        values = metrics[name]
        acc = values.get("sparse_categorical_accuracy")
        count = values.get("example_count")
        line = f"  {name:<{width}} accuracy {acc:.4f}" if acc is not None else f"  {name:<{width}}"
        lines.append(f"{line}  {unit} {int(count) if count else '?'}")
        if name == "overall":
            recalls = [f"{classes[i]} {values[f'recall/class_{i}']:.3f}"
                       for i in range(len(classes)) if f"recall/class_{i}" in values]
            if recalls:
                lines.append("  recall per class: " + ", ".join(recalls))
    return lines
