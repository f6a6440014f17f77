"""Components of the suite."""

import suite  # noqa: F401  (sets the Keras policy before TensorFlow loads)

# The suite's artifact types, by the schema titles Kubeflow V2 gives them: a container
# imports a custom type as ``<namespace>.<Title>``, i.e. ``components.EdgeModels``.
_ARTIFACT_TYPES = {"EdgeModels": "components.tflite_export",
                   "RunReport": "components.run_report"}


def __getattr__(name: str):
    if name in _ARTIFACT_TYPES:
        import importlib

        return getattr(importlib.import_module(_ARTIFACT_TYPES[name]), name)
    raise AttributeError(f"module 'components' has no attribute {name!r}")
