"""The builder's code version and dotted paths (what keeps changed code out of the cache)."""

from __future__ import annotations

import shutil

import pytest

from apps.sensor_vibration.app import APP
from apps.sensor_vibration.config import VibrationConfig
from pipelines import builder

SPEC = APP.spec(VibrationConfig.preset("tiny"))


def test_code_version_changes_when_app_or_shared_code_changes(tmp_path, monkeypatch):
    for package in ("apps", "suite", "blocks", "components", "pipelines", "serving"):
        shutil.copytree(builder.REPO_ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(builder, "REPO_ROOT", tmp_path)
    original = builder.code_version(SPEC)
    assert original == builder.code_version(SPEC)
    assert original.startswith(f"{builder.suite.__version__}+")

    model = tmp_path / "apps" / "sensor_vibration" / "model.py"
    model.write_text(model.read_text() + "\n# changed\n")
    after_app_change = builder.code_version(SPEC)
    assert after_app_change != original

    export = tmp_path / "serving" / "export.py"
    export.write_text(export.read_text() + "\n# changed\n")
    assert builder.code_version(SPEC) not in (original, after_app_change)


def test_functions_are_passed_by_dotted_path_into_the_package():
    assert builder.dotted_path(SPEC.fit) == "apps.sensor_vibration.trainer.fit"
    assert builder.dotted_path(SPEC.config_class) == (
        "apps.sensor_vibration.config.VibrationConfig")
    assert builder.dotted_path(SPEC.preprocessing_fn) == (
        "apps.sensor_vibration.preprocessing.preprocessing_fn")
    with pytest.raises(ValueError, match="module-level function"):
        builder.dotted_path(lambda inputs: inputs)
