"""The clickstreams command line: bad input stops the run before anything is written, and
config overrides."""

from __future__ import annotations

import argparse

import pytest

from apps.base import cli as base_cli
from apps.clickstreams import cli
from apps.clickstreams.app import APP


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
    base_cli.add_config_arguments(parser, APP)
    return parser.parse_args(list(argv))


def test_command_line_overrides_reach_the_config():
    config = base_cli.config_from_args(APP, _args(
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
        base_cli.config_from_args(APP, _args("--columns", "a,b"))
    with pytest.raises(ValueError, match="unknown config field 'train.epoch'"):
        base_cli.config_from_args(APP, _args("--set", "train.epoch=3"))
