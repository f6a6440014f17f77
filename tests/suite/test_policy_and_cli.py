"""The Keras policy holds even when tensorflow_transform loads first, every registered app's
command line answers without loading TensorFlow, configs round-trip through JSON and typed
overrides, and the layers only point down."""

from __future__ import annotations

import ast
import dataclasses
import json
import pathlib
import subprocess
import sys

import pytest

from apps import registry
from apps.sensor_vibration.config import VibrationConfig
from suite.config import from_dict, replace_path, to_dict
from tests.cli_help import run_fresh

REPO = pathlib.Path(__file__).resolve().parents[2]
APPS = [registry.load(name) for name in registry.APPS]
# Words each app's help must show beside its command name (its own options and formats).
HELP_WORDS = {
    "sensor_vibration": (["run", "--help"], ["--holdout-load", "--channels"]),
    "medical_scans": (["--help"], ["explain", "dicom"]),
    "clickstreams": (["run", "--help"], ["--columns", "session-tsv"]),
    "speech": (["run", "--help"], ["--eval-indices", "--holdout-speaker", "speech-commands"]),
    "defect_images": (["run", "--help"], ["--mode", "prefix", "anomaly"]),
}


def _python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_keras3_is_active_after_tensorflow_transform_imports_first():
    out = _python(
        "import apps.sensor_vibration.preprocessing\n"  # the package sets the policy...
        "import tensorflow_transform\n"  # ...and TFT, which would switch to Keras 2, loads
        "import os, keras, keras_cv, keras_hub, tensorflow as tf\n"
        "print(os.environ['TF_USE_LEGACY_KERAS'], keras.__version__.split('.')[0],\n"
        "      type(keras.layers.Dense(1)).__module__.split('.')[0])\n")
    assert out.split() == ["0", "3", "keras"]


def test_every_app_answers_help_without_loading_tensorflow():
    calls = [("apps.frontdoor", ["apps"])]
    for app in APPS:
        argv, _ = HELP_WORDS.get(app.name, (["run", "--help"], []))
        calls += [(f"apps.{app.name}.cli", argv), (f"apps.{app.name}.cli", ["compile", "-h"])]
    loaded, printed = run_fresh(*calls)
    assert loaded == []
    for app in APPS:
        assert app.command in printed and app.about in printed
        for word in HELP_WORDS.get(app.name, ([], []))[1]:
            assert word in printed, (app.name, word)


@pytest.mark.parametrize("app", APPS, ids=[a.name for a in APPS])
def test_every_preset_round_trips_through_json_and_passes_its_check(app):
    assert set(app.config_class.PRESETS) >= {"tiny", "default", "full"}
    for name in app.config_class.PRESETS:
        config = app.config_class.preset(name)
        assert config.check() is config
        assert from_dict(app.config_class, json.loads(json.dumps(to_dict(config)))) == config
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        app.config_class.preset("huge")


def test_config_errors_name_the_field():
    tiny = VibrationConfig.preset("tiny")
    with pytest.raises(ValueError, match=r"config\.train: unknown field\(s\) \['epoch'\]"):
        from_dict(VibrationConfig, {"train": {"epoch": 3}})
    with pytest.raises(ValueError, match="unknown config field 'data.windw'; expected one of "
                                         r"data\.\[allow_missing_classes, channels, classes"):
        replace_path(tiny, "data.windw", 3)
    with pytest.raises(ValueError, match=r"expected one of card, data, drift, edge, energy, "
                                         "eval, model, model_name, train"):
        replace_path(tiny, "no.such.field", 1)
    changed = replace_path(tiny, "train.epochs", 3)
    assert changed.train.epochs == 3
    assert changed == dataclasses.replace(tiny, train=dataclasses.replace(tiny.train, epochs=3))


@pytest.mark.parametrize("field, value, expected", [
    ("train.epochs", "many", 'train.epochs: expected an integer, got "many"'),
    ("train.epochs", 2.5, "train.epochs: expected an integer, got 2.5"),
    ("train.epochs", True, "train.epochs: expected an integer, got true"),
    ("data.window", "big", 'data.window: expected an integer, got "big"'),
    ("train.learning_rate", "fast", "train.learning_rate: expected a finite number"),
    ("data.channels", "DE", 'data.channels: expected a list, got "DE"'),
    ("data.channels", ["DE", 3], "data.channels[1]: expected a string, got 3"),
    ("train.noise_snr_db", [1.0], "train.noise_snr_db: expected a list of 2 values"),
    ("data.holdout_load", "two", 'data.holdout_load: expected an integer, got "two"'),
    ("data", 3, "data: expected an object, got 3"),
])
def test_overrides_are_checked_against_the_field_type(field, value, expected):
    with pytest.raises(ValueError) as error:
        replace_path(VibrationConfig.preset("tiny"), field, value)
    assert expected in str(error.value)


def test_overrides_convert_json_values_to_the_field_type():
    tiny = VibrationConfig.preset("tiny")
    config = replace_path(replace_path(tiny, "data.channels", ["DE", "FE"]),
                          "train.learning_rate", 1)
    assert config.data.channels == ("DE", "FE") and config.train.learning_rate == 1.0
    assert isinstance(config.train.learning_rate, float)
    assert replace_path(tiny, "data.holdout_load", None).data.holdout_load is None
    assert replace_path(tiny, "data.holdout_load", 2).data.holdout_load == 2


# What each package may import from the suite's own packages: layers point down only.
LAYERS = ["suite", "blocks", "serving", "components", "pipelines", "apps"]
ALLOWED = {
    "suite": {"suite"},
    "blocks": {"suite", "blocks"},
    "serving": {"suite", "blocks", "serving"},
    "components": {"suite", "blocks", "serving", "components"},
    "pipelines": {"suite", "blocks", "serving", "components", "pipelines"},
}


def _imported_packages(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names & set(LAYERS)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_layers_only_import_downwards(package):
    upward = {}
    for path in sorted((REPO / package).rglob("*.py")):
        bad = _imported_packages(path) - ALLOWED[package]
        if bad:
            upward[str(path.relative_to(REPO))] = sorted(bad)
    assert upward == {}


def test_shared_packages_name_no_app():
    names = [a.name for a in APPS] + [a.command for a in APPS]
    found = []
    for package in ALLOWED:
        for path in (REPO / package).rglob("*.py"):
            text = path.read_text()
            found += [f"{path.relative_to(REPO)}: {n}" for n in names if n in text]
    assert found == []
