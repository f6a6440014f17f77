"""Writing files so that a reader never sees half of one."""

from __future__ import annotations

import os


def write_atomic(path: str, data: bytes | str) -> str:
    """Writes ``data`` to ``path`` through a temporary file beside it and a rename, so a
    reader (or a crash) sees the old file or the new one, never part of it."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    os.replace(tmp, path)
    return path
