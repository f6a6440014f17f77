"""The apps of the suite: one line per app. Each names a package ``apps.<name>`` holding
``app.py`` (the declaration, ``APP``) and ``cli.py`` (its command, ``main``)."""

from __future__ import annotations

import importlib

APPS: tuple[str, ...] = (
    "sensor_vibration",
    "medical_scans",
    "clickstreams",
    "speech",
    "defect_images",
)


def load(name: str):
    """The declaration (``apps.base.app.App``) of the app ``name``; no TensorFlow loads."""
    return importlib.import_module(f"apps.{name}.app").APP


def commands() -> dict[str, str]:
    """Command name (e.g. "sensor-vibration") -> app name (e.g. "sensor_vibration")."""
    return {load(name).command: name for name in APPS}
