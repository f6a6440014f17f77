"""The atomic push: complete version folders only, monotonic versions, no duplicate pushes."""

from __future__ import annotations

import os
import shutil

import pytest

from serving.versions import list_versions, model_fingerprint, push_atomically


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

    def broken_copy(src, dst, **kwargs):
        os.makedirs(dst)
        open(os.path.join(dst, "saved_model.pb"), "wb").close()
        raise OSError("disk full")

    monkeypatch.setattr(shutil, "copytree", broken_copy)
    with pytest.raises(OSError, match="disk full"):
        push_atomically(model, base)
    assert os.listdir(base) == []
