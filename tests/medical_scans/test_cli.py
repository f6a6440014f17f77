"""The medical-scans command line: config overrides and errors."""

from __future__ import annotations

from apps.base import cli as base_cli
from apps.medical_scans import cli
from apps.medical_scans.app import APP


def test_overrides_reach_the_config_and_bad_values_name_the_field(capsys):
    args = base_cli.build_parser(APP, "", "").parse_args(
        ["run", "--preset", "default", "--format", "npz", "--image-size", "64",
         "--skip-bad-files", "--set", "train.max_minutes=5"])
    config = base_cli.config_from_args(APP, args)
    assert config.data.format == "npz" and config.data.skip_bad_files is True
    assert config.model.image_size == 64 and config.train.max_minutes == 5
    assert config.model.kind == "resnet"
    assert cli.main(["run", "--set", "data.classes=[\"A\",\"B\",\"C\"]"]) == 2
    assert "data.classes" in capsys.readouterr().err


def test_predict_needs_a_model_or_a_server(tmp_path, capsys):
    assert cli.main(["predict", str(tmp_path / "scan.png")]) == 2
    assert "--model DIR" in capsys.readouterr().err
