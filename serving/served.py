"""A pushed model as the suite serves it, loaded in process: its ``serving_default``
signature on serialized tf.Examples, the metadata and config kept beside it, and the Keras
model inside the same export (for explanations). Prediction commands use it when they are
given ``--model DIR`` instead of a server."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import suite  # noqa: F401  (Keras policy before TensorFlow)
from serving.export import load_keras_model, load_metadata
from serving.versions import resolve_model_dir


class ServedModel:
    """A pushed model: a version folder or a model base path (its newest version). ``app``
    (when given) must be the app that exported it."""

    def __init__(self, path: str, app: str | None = None):
        import tensorflow as tf  # noqa: PLC0415

        self.model_dir = resolve_model_dir(path)
        self.metadata = load_metadata(self.model_dir)
        if app is not None and self.metadata.get("app") != app:
            raise ValueError(f"{self.model_dir}: expected a model of app {app!r}, got one of "
                             f"app {self.metadata.get('app')!r}")
        self._serve = tf.saved_model.load(self.model_dir).signatures["serving_default"]
        self._keras = None

    def config(self, config_class: type) -> Any:
        """The effective config the model was trained with."""
        from suite.config import from_dict  # noqa: PLC0415

        return from_dict(config_class, self.metadata["config"])

    def predict(self, examples: Sequence[bytes]) -> dict[str, Any]:
        """``serving_default`` outputs (numpy) for serialized tf.Examples."""
        import tensorflow as tf  # noqa: PLC0415

        outputs = self._serve(examples=tf.constant(list(examples), tf.string))
        return {k: v.numpy() for k, v in outputs.items()}

    @property
    def keras_model(self):
        """The Keras model kept inside the export (loaded on first use)."""
        if self._keras is None:
            self._keras = load_keras_model(self.model_dir)
        return self._keras
