"""Files of the pipeline's steps, on local disks and object stores alike.

On Kubeflow / Vertex AI every artifact URI and the serving folder are ``gs://`` paths, so the
suite's own steps (export, push, TFLite files, run report) write through ``tf.io.gfile``,
which also reads and writes local paths. Two promises hold on both:

- a reader never sees half of a file (``write_atomic``) or of a folder (``staged_tree``);
- work that needs local files (the TFLite converter, Keras loading, matplotlib) runs on a
  local copy (``local_tree``) and is published with ``staged_tree``.

An object store has no folders and no atomic rename of one. There a published folder is
uploaded file by file with the files named in ``last`` (``saved_model.pb``, a report) at the
end, so a poller that waits for them (TF Serving loads a version once its ``saved_model.pb``
reads) never takes a folder that is still arriving.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence


def _gfile():
    import tensorflow as tf  # noqa: PLC0415  (not needed for local paths)

    return tf.io.gfile


def is_local(path: str) -> bool:
    """Whether ``path`` is a local file system path (no ``scheme://``)."""
    return "://" not in path


def exists(path: str) -> bool:
    return os.path.exists(path) if is_local(path) else _gfile().exists(path)


def isdir(path: str) -> bool:
    return os.path.isdir(path) if is_local(path) else _gfile().isdir(path)


def makedirs(path: str) -> None:
    """Makes a folder and its parents (nothing when it exists)."""
    if is_local(path):
        os.makedirs(path, exist_ok=True)
    else:
        _gfile().makedirs(path)


def listdir(path: str) -> list[str]:
    """The entries of a folder (names without a trailing ``/``), sorted."""
    names = os.listdir(path) if is_local(path) else _gfile().listdir(path)
    return sorted(n.rstrip("/") for n in names)


def open_read(path: str):
    """A binary file object to read ``path`` from (a context manager)."""
    return open(path, "rb") if is_local(path) else _gfile().GFile(path, "rb")


def read_bytes(path: str) -> bytes:
    with open_read(path) as f:
        return f.read()


def read_text(path: str) -> str:
    return read_bytes(path).decode("utf-8")


def glob(pattern: str) -> list[str]:
    """The paths matching ``pattern`` (``*``, ``?`` and ``[...]`` within one level), sorted."""
    if is_local(pattern):
        import glob as local_glob  # noqa: PLC0415

        return sorted(local_glob.glob(pattern))
    return sorted(_gfile().glob(pattern))


def walk_files(folder: str) -> list[str]:
    """Every file under ``folder``, as paths relative to it with ``/``, sorted."""
    out = []
    walk = os.walk(folder) if is_local(folder) else _gfile().walk(folder)
    for root, _, names in walk:
        relative = os.path.relpath(root, folder) if is_local(folder) else (
            root[len(folder.rstrip("/")):].strip("/") or ".")
        for name in names:
            out.append(name if relative == "." else f"{relative.replace(os.sep, '/')}/{name}")
    return sorted(out)


def write_atomic(path: str, data: bytes | str) -> str:
    """Writes ``data`` to ``path`` through a temporary file beside it and a rename, so a
    reader (or a crash) sees the old file or the new one, never part of it (an object
    store's rename of one object is a server-side copy: the object appears whole)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    mode = "wb" if isinstance(data, bytes) else "w"
    local = is_local(path)
    folder = os.path.dirname(path)
    try:
        if folder:
            makedirs(folder)
        if local:
            with open(tmp, mode) as f:
                f.write(data)
            os.replace(tmp, path)
        else:
            with _gfile().GFile(tmp, mode) as f:
                f.write(data)
            _gfile().rename(tmp, path, overwrite=True)
    except BaseException as e:
        with contextlib.suppress(Exception):
            if exists(tmp):
                (os.remove if local else _gfile().remove)(tmp)
        if isinstance(e, OSError) and e.filename is None:  # a failed write names no file
            raise OSError(e.errno, e.strerror, path) from e
        raise
    return path


def copy_file(src: str, dst: str) -> None:
    """Copies one file (either side local or remote), replacing ``dst``."""
    if is_local(src) and is_local(dst):
        shutil.copyfile(src, dst)
    else:
        _gfile().copy(src, dst, overwrite=True)


def copy_tree(src: str, dst: str, last: Sequence[str] = ()) -> None:
    """Copies the files under ``src`` into ``dst`` (made when missing), those whose relative
    path is in ``last`` after all the others."""
    files = walk_files(src)
    ordered = [f for f in files if f not in last] + [f for f in files if f in last]
    made = set()
    for relative in ordered:
        target = f"{dst.rstrip('/')}/{relative}"
        parent = target.rsplit("/", 1)[0]
        if parent not in made:
            makedirs(parent)
            made.add(parent)
        copy_file(f"{src.rstrip('/')}/{relative}", target)
    if not files:
        makedirs(dst)


def remove_tree(path: str) -> None:
    """Removes a folder and everything under it; nothing when it does not exist."""
    if is_local(path):
        shutil.rmtree(path, ignore_errors=True)
        return
    if _gfile().exists(path):
        _gfile().rmtree(path)


@contextlib.contextmanager
def staged_tree(dst: str, last: Sequence[str] = ()) -> Iterator[str]:
    """Yields an empty local folder to fill; when the block ends without an error, it
    replaces ``dst`` as a whole. A local ``dst`` is renamed into place in one step (the
    folder is made beside it, on the same disk); a remote one is uploaded file by file,
    ``last`` at the end. When the block fails, nothing of it reaches ``dst``."""
    if is_local(dst):
        parent = os.path.dirname(dst.rstrip("/")) or "."
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".staging-", dir=parent)
    else:
        staging = tempfile.mkdtemp(prefix="staging-")
    try:
        yield staging
        if is_local(dst):
            shutil.rmtree(dst, ignore_errors=True)
            os.rename(staging, dst)
        else:
            remove_tree(dst)
            copy_tree(staging, dst, last)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def local_tree(path: str) -> Iterator[str]:
    """Yields a local folder holding what ``path`` holds: ``path`` itself when local, else
    a temporary copy, removed afterwards."""
    if is_local(path):
        yield path
        return
    folder = tempfile.mkdtemp(prefix="local-copy-")
    try:
        copy_tree(path, folder)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
