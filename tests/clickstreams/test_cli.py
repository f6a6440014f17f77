"""The clickstreams command line: help without TensorFlow, bad input stops the run before
anything is written, and config overrides."""

from __future__ import annotations

import argparse

import pytest

from apps.clickstreams import cli
from tests.cli_help import run_fresh


def test_help_and_app_list_do_not_load_tensorflow():
    loaded, printed = run_fresh(("suite.cli", ["apps"]),
                                ("apps.clickstreams.cli", ["run", "--help"]))
    assert loaded == []
    assert "clickstreams" in printed and "--columns" in printed and "session-tsv" in printed


def test_bad_log_stops_the_run_before_anything_is_written(tmp_path, capsys):
    log = tmp_path / "events.tsv"
    log.write_text("SessionId\tItemId\tTime\n1\t10\t1700000000\n1\t11\tlater\n")
    workspace = tmp_path / "ws"
    code = cli.main(["run", "--data", str(log), "--workspace", str(workspace)])
    assert code == 2
    err = capsys.readouterr().err
    assert f"{log}: line 3, column 'Time': expected unix seconds, got 'later'" in err
    assert not (workspace / "clickstreams" / "examples").exists()
    assert not (workspace / "clickstreams" / "config.json").exists()


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_config_args(parser)
    return parser.parse_args(list(argv))


def test_command_line_overrides_reach_the_config():
    config = cli.config_from_args(_args(
        "--format", "csv", "--columns", "sid,product,when,kind", "--separator", ";",
        "--time-format", "unix_ms", "--model", "gru", "--loss", "sampled", "--epochs", "3",
        "--set", "data.max_history=5", "--set", "eval.min_lift=1.1"))
    data = config.data
    assert (data.format, data.separator, data.time_format) == ("csv", ";", "unix_ms")
    assert (data.session_column, data.item_column, data.time_column, data.event_column) == (
        "sid", "product", "when", "kind")
    assert data.max_history == 5 and config.eval.min_lift == 1.1
    assert (config.model.kind, config.train.loss, config.train.epochs) == ("gru", "sampled", 3)
    with pytest.raises(ValueError, match="expected SESSION,ITEM,TIME"):
        cli.config_from_args(_args("--columns", "a,b"))
    with pytest.raises(ValueError, match="unknown config field 'train.epoch'"):
        cli.config_from_args(_args("--set", "train.epoch=3"))


@pytest.mark.parametrize("name", ["tiny", "default", "full"])
def test_presets_round_trip_through_json(name):
    import json

    from apps.clickstreams.config import ClickstreamConfig, preset
    from suite.config import from_dict, to_dict

    config = preset(name)
    assert from_dict(ClickstreamConfig, json.loads(json.dumps(to_dict(config)))) == config
