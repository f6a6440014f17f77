"""Numeric model versions under a TF Serving model base path (``<base>/<version>/``).

TF Serving serves only folders whose names are numbers; anything else (the atomic
pusher's hidden staging folders, stray files) is ignored here the same way.

A new version is published atomically (``push_atomically``): TFX's stock filesystem push
copies files straight into ``<base>/<version>/``, so a model server polling the base path
could see a half-copied version, and two pushes in the same second would collide. Here the
model is copied into a hidden staging folder beside the versions and renamed into place in
one step; on an object store (``gs://``), which has no folder rename, the files are uploaded
with ``saved_model.pb`` last (``suite.files.staged_tree``). The version is a unix timestamp,
raised above the newest existing version when needed so that "latest" always means the last
push. A model identical to the newest version is not published again.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence

from suite import files

# Uploaded after the rest of a version on an object store: TF Serving cannot load a version
# before it reads.
SAVED_MODEL_LAST = ("saved_model.pb",)


def list_versions(base_path: str) -> list[int]:
    """The numeric version folders under a model base path, ascending (none when the base
    path does not exist)."""
    if not files.isdir(base_path):
        return []
    return sorted(int(n) for n in files.listdir(base_path)
                  if n.isdigit() and files.isdir(os.path.join(base_path, n)))


def resolve_model_dir(path: str) -> str:
    """A SavedModel folder from either a version folder or a TF Serving model base path
    (its newest numeric version)."""
    if files.exists(os.path.join(path, "saved_model.pb")):
        return path
    versions = list_versions(path)
    if not versions:
        raise FileNotFoundError(f"{path}: expected a SavedModel folder or a model base path "
                                "with numeric version folders")
    return os.path.join(path, str(versions[-1]))


def model_fingerprint(model_dir: str, leave_out: Sequence[str] = ()) -> str:
    """A hash of every file of a SavedModel directory (names and contents), leaving out the
    relative paths (or folders, ending in "/") that start with one of ``leave_out``."""
    digest = hashlib.sha256()
    for relative in files.walk_files(model_dir):
        if relative.startswith(tuple(leave_out)):
            continue
        digest.update(relative.encode())
        with files.open_read(f"{model_dir}/{relative}") as f:  # in chunks: variables are big
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def push_atomically(model_dir: str, base_dir: str, leave_out: Sequence[str] = ()
                    ) -> tuple[str, bool]:
    """Publishes ``model_dir`` as a new version under ``base_dir``.

    Returns (version, pushed): pushed is False when the newest version already holds an
    identical model (``model_fingerprint`` with ``leave_out``), whose version is returned
    instead.
    """
    existing = list_versions(base_dir)
    if existing:
        latest = str(existing[-1])
        if (model_fingerprint(os.path.join(base_dir, latest), leave_out)
                == model_fingerprint(model_dir, leave_out)):
            return latest, False
    version = max(int(time.time()), existing[-1] + 1 if existing else 0)
    with files.staged_tree(os.path.join(base_dir, str(version)), SAVED_MODEL_LAST) as staging:
        files.copy_tree(model_dir, staging)
    return str(version), True
