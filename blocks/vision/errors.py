"""The error the vision blocks raise on bad image data (no TensorFlow)."""

from __future__ import annotations


class ImageError(ValueError):
    """Bad image data; the message starts with the offending file (or field) and says what was
    expected. Apps subclass it for their own data errors."""
