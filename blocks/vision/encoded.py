"""Checks that encoded image bytes are a complete image a served model can decode.

The served models decode with ``tf.io.decode_image`` (``blocks.vision.decode``); this check
runs at ingestion and in ``predict`` with PIL only (no TensorFlow), so a bad file is named
before anything is trained or loaded. Raises ``ImageError`` naming the file.
"""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

from blocks.vision.errors import ImageError

# Modes tf.io.decode_image reads (16-bit PNG is scaled to 8 bits there).
_MODES = {"JPEG": frozenset({"L", "RGB"}),
          "PNG": frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16", "I;16B", "I;16L"}),
          "BMP": frozenset({"L", "RGB", "RGBA"})}


def _bmp_problem(data: bytes, mode: str) -> str | None:
    """Why a BMP cannot be decoded by tf.io.decode_image, or None."""
    if len(data) < 34:
        return "truncated BMP header"
    bits = int.from_bytes(data[28:30], "little")
    compression = int.from_bytes(data[30:34], "little")
    if bits not in (8, 24, 32):
        return f"{bits}-bit BMP; expected an 8-bit grayscale, 24- or 32-bit BMP"
    if compression != 0:
        return f"compressed BMP (compression {compression}); expected an uncompressed BMP"
    if mode not in _MODES["BMP"]:
        return f"BMP of mode {mode!r} (a colour palette); expected grayscale or RGB"
    return None


def check_encoded(path: str, data: bytes, formats: tuple[str, ...], expected: str) -> dict:
    """Decodes ``data`` fully; returns its format, mode, width and height. Raises ImageError
    ``"<path>: <problem>; <expected>"`` when it is not a complete image of one of ``formats``
    (JPEG, PNG, BMP) in a mode the served model reads: truncated or corrupt files, other
    formats, colour-palette BMPs, unsupported modes."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind, mode = image.format, image.mode
            if kind not in formats:
                raise ImageError(f"{path}: {kind or 'unknown'} image; {expected}")
            image.load()  # decodes every pixel: truncated or corrupt files fail here
            width, height = image.size
    except ImageError:
        raise
    except UnidentifiedImageError as e:
        raise ImageError(f"{path}: cannot decode the image (damaged, or not an image "
                         f"file); {expected}") from e
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... on bad data
        raise ImageError(f"{path}: cannot decode the image ({type(e).__name__}: {e}); "
                         f"{expected}") from e
    if width < 1 or height < 1:
        raise ImageError(f"{path}: empty {kind} image; {expected}")
    if kind == "BMP":
        problem = _bmp_problem(data, mode)
        if problem:
            raise ImageError(f"{path}: {problem}")
    elif mode not in _MODES[kind]:
        raise ImageError(f"{path}: unsupported {kind} mode {mode!r}; expected a grayscale or "
                         "RGB image")
    return {"format": kind, "mode": mode, "width": width, "height": height}
