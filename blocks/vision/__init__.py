"""Vision blocks: image decoding (``decode``), DICOM conversion (``dicom``), Grad-CAM
(``gradcam``) and the served-model explanation check (``explanation``).

Only the error class is imported here (no TensorFlow): the DICOM block is used by command
lines that must start without loading TensorFlow.
"""

import suite  # noqa: F401  (Keras policy before TensorFlow)
from blocks.vision.errors import ImageError

__all__ = ["ImageError"]
