"""DICOM files -> 8-bit grayscale images, PNG encoding, and a small DICOM writer.

No TensorFlow; pydicom is imported only by the functions that read or write DICOM, so
command lines using this module start fast. Bad files raise ``ImageError`` naming the file.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from blocks.vision.errors import ImageError

DICOM_EXTENSIONS = (".dcm", ".dicom")


def _has_dicom_preamble(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def is_dicom(path: str) -> bool:
    """Whether ``path`` is a DICOM file by name (.dcm, .dicom) or by its DICM preamble."""
    return path.lower().endswith(DICOM_EXTENSIONS) or _has_dicom_preamble(path)


def _first(value: Any) -> float:
    """The first value of a possibly multi-valued DICOM number."""
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        value = value[0]
    return float(value)


def _check_tag(path: str, ds, keyword: str, what: str, accepted: Sequence[str]) -> None:
    """Raises ImageError when the file's ``keyword`` tag holds a value outside ``accepted``
    (a missing or empty tag, or an empty ``accepted``, passes)."""
    value = str(ds.get(keyword, "") or "").strip().upper()
    if accepted and value and value not in {a.upper() for a in accepted}:
        raise ImageError(f"{path}: {what} {value!r} ({keyword} tag); the model takes "
                         f"{' or '.join(accepted)} only")


def read_dicom(path: str, default_window: Sequence[float] | None = None, *,
               modalities: Sequence[str] = (), views: Sequence[str] = ()
               ) -> tuple[np.ndarray, str]:
    """The uint8 [H, W] image of a DICOM file (see ``dicom_to_uint8``) and its PatientID
    ("" when absent). A file whose Modality tag is not one of ``modalities`` (e.g. a CT
    slice for a radiograph model), or whose ViewPosition is not one of ``views``, is
    refused with an ImageError naming the tag; empty lists accept any."""
    import pydicom  # noqa: PLC0415 (only DICOM input needs it)
    from pydicom.errors import InvalidDicomError  # noqa: PLC0415

    try:
        try:
            ds = pydicom.dcmread(path)
        except InvalidDicomError:
            # Old files may lack the 128-byte preamble; anything else is not DICOM at all.
            ds = pydicom.dcmread(path, force=True)
            if "PixelData" not in ds and "SOPClassUID" not in ds:
                raise ImageError(f"{path}: not a DICOM file (expected a DICOM image)") from None
    except ImageError:
        raise
    except Exception as e:  # pydicom raises many kinds on damaged files
        raise ImageError(f"{path}: cannot read the DICOM file ({e}); expected a DICOM "
                         "image") from e
    _check_tag(path, ds, "Modality", "not a radiograph: modality", modalities)
    _check_tag(path, ds, "ViewPosition", "a view the model was not trained for:", views)
    if "PixelData" not in ds:
        raise ImageError(f"{path}: DICOM file has no pixel data (expected an image)")
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageError(f"{path}: unsupported PhotometricInterpretation "
                         f"{photometric or '(missing)'!r}; expected a grayscale image "
                         "(MONOCHROME1 or MONOCHROME2)")
    # pydicom warns (and logs) what it suspects while decoding: part of the error if decoding
    # fails, not printed as a raw Python warning or log line.
    pydicom_log = logging.getLogger("pydicom")
    level = pydicom_log.level
    pydicom_log.setLevel(logging.ERROR)
    with warnings.catch_warnings(record=True) as suspected:
        warnings.simplefilter("always")
        try:
            pixels = ds.pixel_array
        except Exception as e:  # missing decoder plugin, inconsistent attributes, short data
            syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
            name = getattr(syntax, "name", None) or str(syntax or "unknown transfer syntax")
            hints = "".join(f" ({w.message})" for w in suspected)
            raise ImageError(f"{path}: cannot decode the pixel data ({name}): {e}{hints}") \
                from e
        finally:
            pydicom_log.setLevel(level)
    pixels = np.asarray(pixels)
    if pixels.ndim == 3:  # multi-frame: the first frame
        pixels = pixels[0]
    if pixels.ndim != 2 or pixels.size == 0:
        raise ImageError(f"{path}: expected a 2-D grayscale image, got pixel data of shape "
                         f"{list(np.asarray(ds.pixel_array).shape)}")
    slope = ds.get("RescaleSlope", None)
    intercept = ds.get("RescaleIntercept", None)
    values = pixels.astype(np.float64) * (1.0 if slope in (None, "") else _first(slope))
    values += 0.0 if intercept in (None, "") else _first(intercept)

    window = None
    center, width = ds.get("WindowCenter", None), ds.get("WindowWidth", None)
    if center not in (None, "") and width not in (None, "") and _first(width) > 0:
        window = (_first(center), _first(width))
    elif default_window is not None:
        window = (float(default_window[0]), float(default_window[1]))
    if window is not None and window[1] > 0:
        low, high = window[0] - window[1] / 2.0, window[0] + window[1] / 2.0
    else:
        low, high = float(values.min()), float(values.max())
    if high > low:
        scaled = np.clip((values - low) / (high - low), 0.0, 1.0) * 255.0
        out = np.floor(scaled + 0.5).astype(np.uint8)
    else:  # a constant image
        out = np.zeros(values.shape, np.uint8)
    if photometric == "MONOCHROME1":  # stored inverted: higher = darker
        out = 255 - out
    return out, str(ds.get("PatientID", "") or "").strip()


def dicom_to_uint8(path: str, default_window: Sequence[float] | None = None) -> np.ndarray:
    """A DICOM file's image as uint8 [H, W], higher = brighter.

    The first frame of a multi-frame file; MONOCHROME1 and MONOCHROME2 only. The stored
    values are rescaled (RescaleSlope, RescaleIntercept; defaults 1 and 0), then the window
    [center - width / 2, center + width / 2] (the file's first WindowCenter / WindowWidth,
    else ``default_window`` = (center, width), else the image's min and max) is mapped
    linearly onto 0..255 (clipped, rounded half up). MONOCHROME1 is inverted.
    """
    return read_dicom(path, default_window)[0]


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8 image, [H, W] (grayscale) or [H, W, 3] (RGB); [H, W, 1] is
    taken as grayscale."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"encode_png: expected a uint8 array, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(f"encode_png: expected shape [H, W] or [H, W, 3], got "
                         f"{list(array.shape)}")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_dicom(path: str, pixels: np.ndarray | None, *, photometric: str = "MONOCHROME2",
                slope: float | None = None, intercept: float | None = None,
                window: tuple[Any, Any] | None = None, patient_id: str = "",
                frames: int = 1, modality: str = "DX", view: str | None = None) -> None:
    """Writes a DICOM file (secondary capture, 16-bit unsigned) of uint16 ``pixels`` ([H, W],
    or [frames, H, W]); None writes a file without pixel data. ``window`` = (center, width),
    values may be lists (multi-valued). For synthetic data and tests; the UIDs derive from
    the file name and ``patient_id``, so the same call writes the same file."""
    from pydicom.dataset import FileDataset, FileMetaDataset  # noqa: PLC0415
    from pydicom.uid import (  # noqa: PLC0415
        ExplicitVRLittleEndian,
        SecondaryCaptureImageStorage,
        generate_uid,
    )

    name = os.path.basename(path)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[name, patient_id])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[patient_id, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[patient_id, "series"])
    ds.Modality = modality
    if view is not None:
        ds.ViewPosition = view
    ds.PatientID = patient_id
    ds.PhotometricInterpretation = photometric
    if slope is not None:
        ds.RescaleSlope = slope
    if intercept is not None:
        ds.RescaleIntercept = intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if pixels is not None:
        pixels = np.asarray(pixels, dtype=np.uint16)
        ds.SamplesPerPixel = 1
        ds.Rows, ds.Columns = pixels.shape[-2:]
        if frames > 1:
            ds.NumberOfFrames = frames
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 0
        ds.PixelData = pixels.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
