"""Modality blocks shared by the apps: signal front ends and augmentation (``blocks.signal``)
and image decoding, DICOM conversion and Grad-CAM explanations (``blocks.vision``).

Each block is a Keras layer or a plain function in a module named after it. Blocks never
import apps. Importing this package pins the suite's Keras policy first, before anything can
import TensorFlow (see ``suite``).
"""

import suite  # noqa: F401  (Keras policy before TensorFlow)
