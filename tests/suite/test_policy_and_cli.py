"""The Keras policy holds even when tensorflow_transform loads first, the command lines
answer without loading TensorFlow, and configs round-trip through JSON."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from apps.sensor_vibration.config import PRESETS, VibrationConfig, preset
from suite.config import from_dict, replace_path, to_dict
from tests.cli_help import run_fresh


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


def test_help_and_app_list_do_not_load_tensorflow():
    loaded, printed = run_fresh(("suite.cli", ["apps"]),
                                ("apps.sensor_vibration.cli", ["run", "--help"]))
    assert loaded == []
    assert "sensor-vibration" in printed and "--holdout-load" in printed


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_through_json(name):
    config = preset(name)
    assert from_dict(VibrationConfig, json.loads(json.dumps(to_dict(config)))) == config


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match=r"config\.train: unknown field\(s\) \['epoch'\]"):
        from_dict(VibrationConfig, {"train": {"epoch": 3}})
    with pytest.raises(ValueError, match="unknown config field 'data.windw'"):
        replace_path(preset("tiny"), "data.windw", 3)
    changed = replace_path(preset("tiny"), "train.epochs", 3)
    assert changed.train.epochs == 3
    assert changed == dataclasses.replace(
        preset("tiny"), train=dataclasses.replace(preset("tiny").train, epochs=3))
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        preset("huge")
