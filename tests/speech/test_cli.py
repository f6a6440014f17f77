"""The speech command line: help without TensorFlow, and bad input stopping a run before
anything is trained or written."""

from __future__ import annotations

import os

from apps.speech import cli, data
from tests.cli_help import run_fresh


def test_help_answers_without_loading_tensorflow():
    loaded, printed = run_fresh(("apps.speech.cli", ["--help"]),
                                ("apps.speech.cli", ["run", "--help"]),
                                ("apps.speech.cli", ["transcribe", "--help"]))
    assert loaded == []
    for text in ("--format", "fsdd", "--mode", "--skip-bad-files", "--holdout-speaker",
                 "--eval-indices", "--keywords", "--subset", "speech_transcribe"):
        assert text in printed, text


def test_bad_clip_stops_the_run_before_writing_examples(tmp_path, capsys):
    clips = data.generate_synthetic(str(tmp_path / "clips"), "fsdd", classes=("0", "1"),
                                    speakers=3, per_speaker=2)
    bad = os.path.join(clips, "1_george_7.wav")
    with open(bad, "wb") as f:
        f.write(b"RIFF\x10\x00\x00\x00WAVEfmt ")
    workspace = tmp_path / "ws"
    assert cli.main(["run", "--data", clips, "--workspace", str(workspace)]) == 2
    err = capsys.readouterr().err
    assert bad in err and "truncated WAV" in err
    assert not (workspace / "speech" / "examples").exists()
    assert not (workspace / "speech" / "config.json").exists()


def test_argument_errors_name_the_argument(tmp_path, capsys):
    assert cli.main(["run", "--workspace", str(tmp_path), "--set", "train.epoch=3"]) == 2
    assert "unknown config field 'train.epoch'" in capsys.readouterr().err
    assert cli.main(["run", "--workspace", str(tmp_path), "--eval-indices", "4-1"]) == 2
    assert "data.eval_indices: range '4-1' runs backwards" in capsys.readouterr().err
    assert cli.main(["predict", "clip.wav"]) == 2
    assert "expected either --model DIR" in capsys.readouterr().err
