"""Progress lines a person reads while a command or a pipeline step runs."""

from __future__ import annotations

import time


def say(message: str) -> None:
    """Prints a time-stamped progress line."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)
