"""The medical-scans command line: help without TensorFlow, config overrides and errors."""

from __future__ import annotations

import subprocess
import sys

from apps.medical_scans import cli


def test_help_and_app_list_do_not_load_tensorflow():
    code = ("import sys, contextlib, io\n"
            "from suite import cli as suite_cli\n"
            "from apps.medical_scans import cli\n"
            "buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n"
            "    suite_cli.main(['apps'])\n"
            "    try:\n"
            "        cli.main(['--help'])\n"
            "    except SystemExit:\n"
            "        pass\n"
            "print('tensorflow' in sys.modules, 'tfx' in sys.modules)\n"
            "print(buf.getvalue())\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded, rest = result.stdout.split("\n", 1)
    assert loaded == "False False"
    assert "medical-scans" in rest and "explain" in rest and "dicom" in rest


def test_overrides_reach_the_config_and_bad_values_name_the_field(capsys):
    args = cli.build_parser().parse_args(
        ["run", "--preset", "default", "--format", "npz", "--image-size", "64",
         "--skip-bad-files", "--set", "train.max_minutes=5"])
    config = cli.config_from_args(args)
    assert config.data.format == "npz" and config.data.skip_bad_files is True
    assert config.model.image_size == 64 and config.train.max_minutes == 5
    assert config.model.kind == "resnet"
    assert cli.main(["run", "--set", "data.classes=[\"A\",\"B\",\"C\"]"]) == 2
    assert "data.classes" in capsys.readouterr().err


def test_predict_needs_a_model_or_a_server(tmp_path, capsys):
    assert cli.main(["predict", str(tmp_path / "scan.png")]) == 2
    assert "--model DIR" in capsys.readouterr().err
