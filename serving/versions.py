"""Numeric model versions under a TF Serving model base path (``<base>/<version>/``).

TF Serving serves only folders whose names are numbers; anything else (the atomic
pusher's hidden staging folders, stray files) is ignored here the same way.
"""

from __future__ import annotations

import os


def list_versions(base_path: str) -> list[int]:
    """The numeric version folders under a model base path, ascending (none when the base
    path does not exist)."""
    if not os.path.isdir(base_path):
        return []
    return sorted(int(n) for n in os.listdir(base_path)
                  if n.isdigit() and os.path.isdir(os.path.join(base_path, n)))


def resolve_model_dir(path: str) -> str:
    """A SavedModel folder from either a version folder or a TF Serving model base path
    (its newest numeric version)."""
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return path
    versions = list_versions(path)
    if not versions:
        raise FileNotFoundError(f"{path}: expected a SavedModel folder or a model base path "
                                "with numeric version folders")
    return os.path.join(path, str(versions[-1]))
