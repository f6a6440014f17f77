"""Runs of one app on one workspace take turns: an exclusive lock on the app's folder.

The pipeline's metadata store, its outputs and the ingested examples of an app live in
``<workspace>/<app>/``; two runs writing there at once could interleave MLMD executions and
race on the same examples folder. The second run says it is waiting and waits. The lock is an
OS lock (``flock``) on the folder itself: a process that dies, even by SIGKILL, releases it,
and no lock file is left behind. Different apps have different folders and run side by side.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def exclusive(folder: str, progress: Callable[[str], None] | None = None) -> Iterator[None]:
    """Holds an exclusive lock on ``folder`` (created if missing) for the duration of the
    block, waiting, and saying so through ``progress``, while another process holds it."""
    os.makedirs(folder, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if progress:
                progress(f"waiting for another run using {folder} to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
