"""Signal blocks: framing, Welch and log-mel spectra, noise and SpecAugment augmentation.

Import the modules themselves (``blocks.signal.log_mel`` ...): this package imports none of
them, so that using one block does not load the others.
"""

import suite  # noqa: F401  (Keras policy before TensorFlow)
