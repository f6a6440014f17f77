"""Runs of one app on one workspace take turns; other apps do not wait; a killed run leaves
no lock behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from apps.sensor_vibration import cli
from suite.locks import exclusive

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _holder(folder, seconds: float) -> subprocess.Popen:
    folder.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), str(seconds)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_run_waits_and_says_so(tmp_path):
    holder = _holder(tmp_path / "ws" / "app", 2.0)
    messages: list[str] = []
    start = time.monotonic()
    with exclusive(str(tmp_path / "ws" / "app"), messages.append):
        waited = time.monotonic() - start
    holder.wait(timeout=30)
    assert waited >= 1.0
    assert messages == [f"waiting for another run using {tmp_path / 'ws' / 'app'} to finish"]
    # Another app's folder in the same workspace does not wait.
    holder = _holder(tmp_path / "ws" / "app", 30.0)
    try:
        start = time.monotonic()
        with exclusive(str(tmp_path / "ws" / "other_app"), messages.append):
            assert time.monotonic() - start < 1.0
        assert len(messages) == 1
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_run_releases_the_lock(tmp_path):
    holder = _holder(tmp_path / "app", 60.0)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    messages: list[str] = []
    start = time.monotonic()
    with exclusive(str(tmp_path / "app"), messages.append):
        assert time.monotonic() - start < 1.0
    assert messages == []


def test_the_run_command_takes_its_turn(tmp_path, capsys):
    holder = _holder(tmp_path / "ws" / "sensor_vibration", 2.0)
    code = cli.main(["run", "--data", str(tmp_path / "no_data"), "--workspace",
                     str(tmp_path / "ws")])
    holder.wait(timeout=30)
    captured = capsys.readouterr()
    assert code == 2
    assert "waiting for another run using" in captured.out
    assert "no_data" in captured.err  # then it ran, and stopped on the missing data folder
