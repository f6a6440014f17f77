"""Industrial deep-learning suite: TFX pipelines from raw domain data to served models.

``suite`` is the ground floor every other package stands on (the Keras policy, config,
examples I/O, the tf.distribute strategy, logging and progress lines); it imports nothing
from the packages above it.

Importing this package pins the Keras policy for the whole process, before
TensorFlow can be imported: models are Keras 3, and tensorflow-transform (which
would otherwise switch the process to legacy Keras 2) uses the ``tf_keras``
package for its own layer only. Every other package of the suite imports this
one first, so the policy holds in the CLI, in tests and in Beam workers.
"""

import os

# The single place where the Keras policy is set: Keras 3 for the suite's models; TFT's own
# transform layer then uses the tf_keras package (see the README, "Keras policy").
os.environ["TF_USE_LEGACY_KERAS"] = "0"
# Keep TensorFlow's C++ INFO/WARNING chatter (CUDA factories, TensorRT) out of user output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
