"""A run whose disk fills up, or whose workspace is read-only, stops with a clear error
(exit status 4) and leaves what was written before as it was: a file-size limit stands in
for a full disk; a read-only bind mount (in a private mount namespace) is the read-only
workspace."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from apps.sensor_vibration import data

RUN = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from apps.sensor_vibration import cli
sys.exit(cli.main(["run", "--data", sys.argv[2], "--workspace", sys.argv[3],
                   "--set", 'data.classes=["Normal", "IR007"]']))
"""


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("disk_full")
    return data.generate_synthetic(str(root / "raw"), classes=("Normal", "IR007"), loads=(0, 1),
                                   n_samples=9000)


# 200 KB: the examples do not fit; 400 KB: they do, and the run report (600 KB) does not.
@pytest.mark.parametrize("limit, where", [(200_000, "data.tfrecord"), (400_000, "report")])
def test_a_full_disk_stops_the_run_cleanly(raw, tmp_path, limit, where):
    workspace = tmp_path / "ws"
    version = workspace / "serving" / "models" / "sensor_vibration" / "1700000000"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"the model served before")
    result = subprocess.run([sys.executable, "-c", RUN, str(limit), raw, str(workspace)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 4, result.stderr[-2000:]
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "cannot write:" in error[0] and "File too large" in error[0]
    assert where in error[0]
    assert "Traceback" not in result.stderr
    # Nothing half-written: no staging folder; examples only when they fitted (then complete);
    # the served model untouched.
    examples = workspace / "sensor_vibration" / "examples"
    assert not any(examples.glob(".tmp-*"))
    written = list(examples.iterdir())
    if limit < 300_000:
        assert written == []
    else:
        assert [(p / "_SUCCESS").exists() for p in written] == [True]
    assert (version / "saved_model.pb").read_bytes() == b"the model served before"
    assert sorted(p.name for p in version.parent.iterdir()) == ["1700000000"]


# Mounts $1 read-only over itself in a private mount namespace, then runs the rest.
READ_ONLY = 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && shift && exec "$@"'


def _read_only_works(path) -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", READ_ONLY, "sh", str(path), "true"],
                           capture_output=True)
    return probe.returncode == 0


def test_a_read_only_workspace_stops_the_run_cleanly(raw, tmp_path):
    workspace = tmp_path / "ws"
    version = workspace / "serving" / "models" / "sensor_vibration" / "1700000000"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"the model served before")
    if not _read_only_works(workspace):
        pytest.skip("this machine cannot mount a read-only bind mount (unshare -m)")
    result = subprocess.run(["unshare", "-m", "sh", "-c", READ_ONLY, "sh", str(workspace),
                             sys.executable, "-c", RUN, str(1 << 40), raw, str(workspace)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 4, result.stderr[-2000:]
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "cannot write:" in error[0], result.stderr[-2000:]
    assert str(workspace) in error[0] and "Read-only file system" in error[0]
    assert "Traceback" not in result.stderr
    assert sorted(p.relative_to(workspace).as_posix() for p in workspace.rglob("*")) == [
        "serving", "serving/models", "serving/models/sensor_vibration",
        "serving/models/sensor_vibration/1700000000",
        "serving/models/sensor_vibration/1700000000/saved_model.pb"]
