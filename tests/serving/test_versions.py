"""The atomic push: complete version folders only, monotonic versions, no duplicate pushes,
on a local disk and on an object store (TensorFlow's ``ram://`` file system, which like
``gs://`` has no folder rename)."""

from __future__ import annotations

import os
import shutil

import uuid

import pytest

from serving.versions import list_versions, model_fingerprint, push_atomically
from suite import files


def _model(path, content: bytes):
    os.makedirs(os.path.join(path, "variables"), exist_ok=True)
    with open(os.path.join(path, "saved_model.pb"), "wb") as f:
        f.write(content)
    with open(os.path.join(path, "variables", "variables.index"), "wb") as f:
        f.write(content[::-1])
    return str(path)


def test_pushes_get_increasing_versions_and_identical_models_are_not_pushed_twice(tmp_path):
    base = str(tmp_path / "models" / "m")
    first, pushed = push_atomically(_model(tmp_path / "a", b"model a"), base)
    assert pushed
    assert os.listdir(base) == [first]
    assert model_fingerprint(os.path.join(base, first)) == model_fingerprint(str(tmp_path / "a"))

    again, pushed = push_atomically(str(tmp_path / "a"), base)
    assert (again, pushed) == (first, False)

    # A newer model always gets a larger version, even within the same second.
    second, pushed = push_atomically(_model(tmp_path / "b", b"model b"), base)
    assert pushed and int(second) > int(first)
    assert list_versions(base) == [int(first), int(second)]


def test_a_failed_copy_leaves_no_version_and_no_staging_folder(tmp_path, monkeypatch):
    base = str(tmp_path / "models" / "m")
    model = _model(tmp_path / "a", b"model a")

    copy = shutil.copyfile

    def broken_copy(src, dst):
        if src.endswith("saved_model.pb"):
            raise OSError("disk full")
        copy(src, dst)

    monkeypatch.setattr(shutil, "copyfile", broken_copy)
    with pytest.raises(OSError, match="disk full"):
        push_atomically(model, base)
    assert os.listdir(base) == []


def test_a_push_to_an_object_store_uploads_saved_model_pb_last(tmp_path, monkeypatch):
    base = f"ram://{uuid.uuid4().hex}/models/m"
    uploaded = []
    copy = files.copy_file

    def recording_copy(src, dst):
        uploaded.append(dst)
        copy(src, dst)

    monkeypatch.setattr(files, "copy_file", recording_copy)
    first, pushed = push_atomically(_model(tmp_path / "a", b"model a"), base)
    assert pushed and list_versions(base) == [int(first)]
    remote = [p for p in uploaded if p.startswith("ram://")]
    assert [p.removeprefix(f"{base}/{first}/") for p in remote] == [
        "variables/variables.index", "saved_model.pb"]
    assert files.read_bytes(f"{base}/{first}/saved_model.pb") == b"model a"
    assert model_fingerprint(f"{base}/{first}") == model_fingerprint(str(tmp_path / "a"))

    assert push_atomically(str(tmp_path / "a"), base) == (first, False)
    second, pushed = push_atomically(_model(tmp_path / "b", b"model b"), base)
    assert pushed and list_versions(base) == [int(first), int(second)]
