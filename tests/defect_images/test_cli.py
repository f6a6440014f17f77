"""The defect-images command line: config overrides, errors naming the argument or field,
``generate``, and ``--help`` without TensorFlow."""

from __future__ import annotations

import os

from apps.base import cli as base_cli
from apps.defect_images import cli
from apps.defect_images.app import APP
from tests.cli_help import run_fresh


def _config(*argv: str):
    args = base_cli.build_parser(APP, "", "").parse_args(["run", *argv])
    return base_cli.config_from_args(APP, args)


def test_overrides_reach_the_config():
    config = _config("--preset", "default", "--format", "prefix", "--mode", "anomaly",
                     "--eval-indices", "201-240", "--use-indices", "1:240",
                     "--good-classes", "crazing", "--skip-bad-files", "--image-size", "96",
                     "--method", "autoencoder", "--set", "anomaly.target_false_alarm=0.01")
    assert config.mode == "anomaly" and config.model_name == "defect_images_anomaly"
    assert config.data.format == "prefix" and config.data.skip_bad_files is True
    assert config.data.eval_indices == (201, 240) and config.data.use_indices == (1, 240)
    assert config.data.good_classes == ("crazing",)
    assert config.model.image_size == 96 and config.anomaly.method == "autoencoder"
    assert config.anomaly.target_false_alarm == 0.01
    classify = _config("--classes", "ok,scratch", "--prefix-pattern", r"(\w+?)-\d+")
    assert classify.mode == "classify" and classify.model_name == "defect_images"
    assert classify.data.classes == ("ok", "scratch")


def test_bad_arguments_name_the_argument_or_field(capsys):
    assert cli.main(["run", "--eval-indices", "240-201"]) == 2
    assert "--eval-indices" in capsys.readouterr().err
    assert cli.main(["run", "--prefix-pattern", "no_group"]) == 2
    assert "data.prefix_pattern" in capsys.readouterr().err
    assert cli.main(["predict", "part.png"]) == 2
    assert "--model DIR" in capsys.readouterr().err


def test_generate_writes_both_layouts(tmp_path, capsys):
    assert cli.main(["generate", "--out", str(tmp_path / "f"), "--per-class", "3",
                     "--size", "32", "--extensions", ".png,.bmp"]) == 0
    assert sorted(os.listdir(tmp_path / "f")) == ["annotations", "ok", "scratch", "spot"]
    assert cli.main(["generate", "--out", str(tmp_path / "p"), "--format", "prefix",
                     "--classes", "ok_front,def_front", "--per-class", "3", "--size", "32",
                     "--layout", "train_test", "--no-voc", "--rgb"]) == 0
    assert sorted(os.listdir(tmp_path / "p")) == ["test", "train"]
    assert "def_front_1.png" in os.listdir(tmp_path / "p" / "train")
    assert "wrote generated data" in capsys.readouterr().out


def test_help_answers_without_loading_tensorflow():
    loaded, printed = run_fresh(("apps.defect_images.cli", ["--help"]),
                                ("apps.defect_images.cli", ["run", "--help"]),
                                ("apps.defect_images.cli", ["explain", "--help"]))
    assert loaded == []
    assert "--mode {classify,anomaly}" in printed and "--eval-indices" in printed
    assert "--skip-bad-files" in printed and "--annotations" in printed
