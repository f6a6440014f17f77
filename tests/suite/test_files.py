"""suite.files on a local disk and on an object store (TensorFlow's ``ram://`` file system,
which like ``gs://`` has no folder rename): whole files, whole folders, local copies."""

from __future__ import annotations

import builtins
import errno
import os
import uuid

import pytest

from suite import files


@pytest.fixture(params=["local", "object store"])
def root(request, tmp_path):
    root = str(tmp_path) if request.param == "local" else f"ram://{uuid.uuid4().hex}"
    yield root
    if request.param != "local":
        files.remove_tree(root)


def test_write_atomic_replaces_a_file_and_leaves_no_temporary_file(root):
    path = f"{root}/a/b/report.json"
    files.write_atomic(path, "old")
    files.write_atomic(path, b"new")
    assert files.read_text(path) == "new"
    assert files.walk_files(root) == ["a/b/report.json"]


def test_a_failed_write_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = str(tmp_path / "report.json")
    files.write_atomic(path, "old")

    class Full:
        def __init__(self, *args):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *args):
            return False

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(builtins, "open", Full)
    with pytest.raises(OSError) as raised:
        files.write_atomic(path, "new")
    monkeypatch.undo()
    assert raised.value.filename == path and raised.value.errno == errno.ENOSPC
    assert files.read_text(path) == "old"
    assert os.listdir(tmp_path) == ["report.json"]


def test_a_staged_folder_appears_whole_with_its_last_files_last(root, monkeypatch):
    dst = f"{root}/edge/7"
    with files.staged_tree(dst) as staging:
        open(os.path.join(staging, "old.tflite"), "w").close()
    copied = []
    copy = files.copy_file
    monkeypatch.setattr(files, "copy_file", lambda s, d: (copied.append(d), copy(s, d)))
    with files.staged_tree(dst, last=("report.json",)) as staging:
        os.makedirs(os.path.join(staging, "sub"))
        for name in ("report.json", "a.tflite", "sub/vocabulary.txt"):
            with open(os.path.join(staging, name), "w") as f:
                f.write(name)
    assert files.walk_files(dst) == ["a.tflite", "report.json", "sub/vocabulary.txt"]
    assert files.read_text(f"{dst}/sub/vocabulary.txt") == "sub/vocabulary.txt"
    if not files.is_local(root):  # uploaded file by file, report.json at the end
        assert copied[-1] == f"{dst}/report.json" and len(copied) == 3
    assert files.listdir(f"{root}/edge") == ["7"]  # no staging folder left beside it


def test_a_failed_staged_folder_leaves_the_old_one(root):
    dst = f"{root}/edge/7"
    files.write_atomic(f"{dst}/report.json", "old")
    with pytest.raises(RuntimeError, match="conversion failed"), \
            files.staged_tree(dst) as staging:
        open(os.path.join(staging, "half.tflite"), "w").close()
        raise RuntimeError("conversion failed")
    assert files.walk_files(dst) == ["report.json"]
    assert files.listdir(f"{root}/edge") == ["7"]


def test_a_local_copy_of_a_folder(root):
    files.write_atomic(f"{root}/model/variables/variables.index", b"index")
    with files.local_tree(f"{root}/model") as local:
        assert os.path.isfile(os.path.join(local, "variables", "variables.index"))
    assert os.path.exists(local) == files.is_local(root)  # a copy is removed afterwards
