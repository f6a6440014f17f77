"""Keeps the stack's known harmless warnings out of a user's terminal.

TensorFlow, Beam, TFX and the Google Cloud clients print many warnings that say nothing
about the user's run (Python-version notices, CUDA/TensorRT probing on CPU machines, type
hint notes). They are dropped; every other warning and error still shows, and TFX's
component start/finish lines are shown as progress.
"""

from __future__ import annotations

import logging
import os
import re
import time
import warnings

HARMLESS = [
    r"non-supported Python version",
    r"TF_USE_LEGACY_KERAS",
    r"Tensorflow version .* found\. Note that TFMA support",
    r"property_predicate",
    r"This output type hint will be ignored",
    r"Make sure that locally built Python SDK docker image",
    r"tensorflow_io",
    r"Could not find TensorRT|cuda drivers|Unable to register cu(DNN|FFT|BLAS)",
    r"oneDNN custom operations",
    r"is deprecated|deprecation",
    r"Skipping checksum|not_cached|Using deployment config|Using connection config",
    r"Warmup data is|Fingerprint",
    r"You are using a non-supported",
    r"No artifact found|Skipping component",
    r"Inferred a schema|is not recognized as a valid|Missing schema",
    r"The 'default_image' field",
    r"Compiled the loaded model, but the compiled metrics",
    r"python-snappy",
    r"custom_executor_spec. is deprecated",
    r"Logging before flag parsing",
    r"Tables initialized inside a tf.function",
]
_HARMLESS = re.compile("|".join(HARMLESS))
_PROGRESS = re.compile(r"^Component (\S+) is (running|finished)\.$")


class _Filter(logging.Filter):
    """Shows component progress in the suite's own format, lets warnings that matter
    through and drops known noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.levelno < logging.WARNING:
            progress = _PROGRESS.match(message)
            if progress:
                stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
                print(f"[{stamp}] {progress.group(1)} {progress.group(2)}", flush=True)
            return False
        return not _HARMLESS.search(message)


_INSTALLED = False


def quiet() -> None:
    """Installs the filters for this process (call before TensorFlow and TFX load); a
    second call does nothing (the progress filter prints, so it must be installed once)."""
    global _INSTALLED
    if _INSTALLED:
        return
    _INSTALLED = True
    # The CUDA/TensorRT probing lines are C++ errors on CPU-only machines: hide them too.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    for category in (FutureWarning, DeprecationWarning, UserWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=category, module=r"(google|apache_beam|tfx|"
                                r"tensorflow.*|keras.*|absl|tfx_bsl|ml_metadata)(\..*)?$")
    warnings.filterwarnings("ignore", message=_HARMLESS.pattern)
    # TFMA's 0/0 on a slice without positives (or negatives): the metric is reported as NaN.
    warnings.filterwarnings("ignore", category=RuntimeWarning,
                            module=r"tensorflow_model_analysis(\..*)?$")
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.INFO)
    absl_logging.use_absl_handler()
    from absl import flags

    flags.FLAGS.mark_as_parsed()  # no "logging before flag parsing" notice
    # Filters on the root handler see every record that propagates (logger filters don't).
    absl_logging.get_absl_handler().addFilter(_Filter())
