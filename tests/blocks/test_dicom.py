"""blocks.vision.dicom: DICOM -> uint8 (rescale, window, MONOCHROME1), ImageError on bad
files, and PNG encoding; no TensorFlow needed."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from blocks.vision import ImageError
from blocks.vision.dicom import dicom_to_uint8, encode_png, is_dicom, read_dicom, write_dicom

STORED = np.array([[0, 100], [200, 300]], np.uint16)  # real values -100, 100, 300, 500


def test_dicom_to_uint8_windows_rescales_and_inverts(tmp_path):
    path = str(tmp_path / "scan.dcm")
    write_dicom(path, STORED, slope=2, intercept=-100, window=(200, 400), patient_id="P7")
    image, patient = read_dicom(path)
    np.testing.assert_array_equal(image, [[0, 64], [191, 255]])  # window [0, 400]
    assert image.dtype == np.uint8 and patient == "P7"
    write_dicom(path, STORED, photometric="MONOCHROME1", slope=2, intercept=-100)
    np.testing.assert_array_equal(dicom_to_uint8(path), 255 - np.array([[0, 85], [170, 255]]))
    write_dicom(path, STORED)
    np.testing.assert_array_equal(dicom_to_uint8(path, default_window=(150, 100)),
                                  [[0, 0], [255, 255]])
    bare = str(tmp_path / "IM0001")  # no extension: found by the DICM preamble
    write_dicom(bare, STORED)
    assert is_dicom(bare) and is_dicom(str(tmp_path / "missing.DCM"))
    assert not is_dicom(str(tmp_path / "missing.png"))


def test_bad_dicom_raises_image_error_naming_the_file(tmp_path):
    path = str(tmp_path / "rgb.dcm")
    write_dicom(path, STORED, photometric="RGB")
    with pytest.raises(ImageError, match=r"rgb\.dcm: .*PhotometricInterpretation 'RGB'"):
        dicom_to_uint8(path)
    write_dicom(path, None)
    with pytest.raises(ImageError, match="rgb.dcm: DICOM file has no pixel data"):
        dicom_to_uint8(path)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not a dicom file at all")
    with pytest.raises(ValueError, match="junk.dcm: "):  # ImageError is a ValueError
        dicom_to_uint8(str(junk))


def test_encode_png_round_trips():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    for array in (gray, gray[..., None], np.stack([gray, gray // 2, 255 - gray], -1)):
        decoded = np.asarray(Image.open(io.BytesIO(encode_png(array))))
        np.testing.assert_array_equal(decoded, array[..., 0] if array.shape[-1:] == (1,)
                                      else array)
    with pytest.raises(ValueError, match="uint8"):
        encode_png(gray.astype(np.float32))


def test_importing_the_dicom_block_loads_no_tensorflow():
    code = ("import sys, blocks.vision.dicom; "
            "print([m for m in ('tensorflow', 'keras') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"
