"""Knowledge distillation for the edge: a small student trained from the served teacher's
soft outputs plus the labels (Hinton et al. 2015).

The student is whatever the app declares (``TFLiteSpec.student``: a function that takes the
teacher's edge model, the part the .tflite files carry, and returns an untrained model with
the same input and output); it is trained here on the teacher's training inputs towards

    alpha * softmax(teacher_logits / T) + (1 - alpha) * one_hot(label)

with cross-entropy against ``softmax(student_logits / T)``. Logits are the log of a
classifier's probabilities, or a ranker's scores as they are. Without a label a row has the
teacher's distribution alone. The teacher is asked on every batch, and float inputs are
mixed pairwise first (mixup): a small student trained on the few examples of a real data set
learns the teacher's answers on them and little else, while on mixed inputs it has to match
the teacher's function between them too (Beyer et al., "Knowledge distillation: A good
teacher is patient and consistent", CVPR 2022). A share of the examples is held out to stop
training when the loss there stops falling (the best epoch's weights are kept). Nothing here
is app-specific: the student is then exported, converted and gated like every other edge
variant (``components.tflite_export``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras
from keras import ops


def describe(student: dict) -> str:
    """One line about a report's ``student`` entry (``components.tflite_export``)."""
    return (f"{student['model']}, {student['parameters']} parameters "
            f"({student['parameter_ratio']:.3f}x the teacher's {student['teacher_parameters']}),"
            f" {student['epochs_run']} epochs (best {student['best_epoch']}) on "
            f"{student['examples']} examples, alpha {student['alpha']:g}, temperature "
            f"{student['temperature']:g}")


def student_builder(reference: str) -> Callable[[keras.Model], keras.Model]:
    """The student function named ``module:function`` (an app's ``TFLiteSpec.student``)."""
    module, _, name = reference.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"student: expected 'module:function' of an importable function, "
                         f"got {reference!r} ({e})") from None


def _is_probabilities(outputs: np.ndarray) -> bool:
    return bool(outputs.min() >= 0 and outputs.max() <= 1
                and np.allclose(outputs.sum(axis=-1), 1.0, atol=1e-3))


def _logits(outputs, probabilities: bool):
    return ops.log(ops.maximum(outputs, 1e-7)) if probabilities else outputs


class _Distiller(keras.Model):
    """Trains ``student`` towards ``teacher`` on each batch as it comes: with ``mixup`` > 0
    the batch's inputs are first mixed pairwise (weights from Beta(mixup, mixup)), and the
    teacher labels the mixed inputs themselves ("function matching", Beyer et al. 2022:
    a patient, consistent teacher); the labels are mixed with the same weights."""

    def __init__(self, student: keras.Model, teacher: keras.Model, *, probabilities: bool,
                 alpha: float, temperature: float, mixup: float):
        super().__init__()
        self.student, self.teacher = student, teacher
        self.probabilities, self.alpha = probabilities, alpha
        self.temperature, self.mixup = temperature, mixup
        self.outputs_n = int(teacher.outputs[0].shape[-1])
        self.loss_tracker = keras.metrics.Mean(name="loss")

    @property
    def metrics(self):
        return [self.loss_tracker]

    def call(self, x, training=False):
        return self.student(x, training=training)

    def _inputs_and_targets(self, x, labels, mix: bool):
        import tensorflow as tf

        hard = tf.one_hot(tf.cast(labels, tf.int32), self.outputs_n)  # zeros: no label
        if mix:
            n = tf.shape(x)[0]
            a, b = tf.random.gamma([n], self.mixup), tf.random.gamma([n], self.mixup)
            weight = a / (a + b)
            pair = tf.random.shuffle(tf.range(n))
            w = tf.reshape(weight, tf.concat([[n], tf.ones([tf.rank(x) - 1], tf.int32)], 0))
            x = w * x + (1.0 - w) * tf.gather(x, pair)
            hard = weight[:, None] * hard + (1.0 - weight[:, None]) * tf.gather(hard, pair)
        known = tf.reduce_sum(hard, axis=-1, keepdims=True)
        soft = tf.nn.softmax(_logits(self.teacher(x, training=False), self.probabilities)
                             / self.temperature)
        hard = hard + (1.0 - known) * soft  # without a label: the teacher's alone
        return x, self.alpha * soft + (1.0 - self.alpha) * hard

    def _loss(self, target, outputs):
        return ops.mean(keras.losses.categorical_crossentropy(
            target, _logits(outputs, self.probabilities) / self.temperature, from_logits=True))

    def train_step(self, data):
        import tensorflow as tf

        x, labels = data
        x, target = self._inputs_and_targets(x, labels, self.mixup > 0)
        with tf.GradientTape() as tape:
            loss = self._loss(target, self.student(x, training=True))
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables,
                                           strict=True))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def test_step(self, data):
        x, labels = data
        x, target = self._inputs_and_targets(x, labels, False)
        self.loss_tracker.update_state(self._loss(target, self.student(x, training=False)))
        return {"loss": self.loss_tracker.result()}


def distill(student: keras.Model, teacher: keras.Model, x: np.ndarray,
            labels: np.ndarray | None, *, alpha: float = 0.5, temperature: float = 2.0,
            mixup: float = 0.4, epochs: int = 60, batch_size: int = 64,
            learning_rate: float = 2e-3, validation_share: float = 0.1, patience: int = 10,
            seed: int = 0) -> dict:
    """Trains ``student`` in place on ``x`` towards ``teacher`` (class probabilities or
    ranking scores) and ``labels`` (class or item indices, or None), with the inputs mixed
    (``mixup``: the Beta parameter; 0, or integer inputs such as item ids: not mixed) and
    the teacher asked on each mixed batch; stops when the loss on the held-out share
    (unmixed) has not fallen for ``patience`` epochs and keeps the best epoch's weights.
    Returns what the training did: epochs run, the best epoch, and the student's argmax
    agreement with the teacher on the held-out share."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"edge.distill_alpha: expected 0 <= alpha <= 1, got {alpha}")
    if temperature <= 0:
        raise ValueError(f"edge.distill_temperature: expected > 0, got {temperature}")
    if mixup < 0:
        raise ValueError(f"edge.distill_mixup: expected >= 0, got {mixup}")
    keras.utils.set_random_seed(seed)
    reference = teacher.predict(x, batch_size=256, verbose=0)
    labels = (np.full(len(x), -1, np.int32) if labels is None
              else np.asarray(labels).reshape(-1).astype(np.int32))
    teacher.trainable = False
    distiller = _Distiller(student, teacher, probabilities=_is_probabilities(reference),
                           alpha=alpha, temperature=temperature,
                           mixup=0.0 if np.issubdtype(x.dtype, np.integer) else mixup)
    distiller.compile(optimizer=keras.optimizers.Adam(learning_rate), jit_compile=False)
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = int(round(validation_share * len(x))) if len(x) >= 20 else 0
    val, fit = order[:n_val], order[n_val:]
    callbacks = []
    if n_val:
        callbacks.append(keras.callbacks.EarlyStopping(patience=patience,
                                                       restore_best_weights=True))
    history = distiller.fit(x[fit], labels[fit], epochs=epochs, batch_size=batch_size,
                            shuffle=True, verbose=0, callbacks=callbacks,
                            validation_data=(x[val], labels[val]) if n_val else None)
    losses = history.history.get("val_loss") or history.history["loss"]
    figures = {"epochs_run": len(losses), "best_epoch": int(np.argmin(losses)) + 1,
               "examples": int(len(fit)), "validation_examples": int(n_val),
               "mixup": distiller.mixup}
    if n_val:
        predicted = student.predict(x[val], batch_size=256, verbose=0)
        figures["validation_agreement"] = float(
            np.mean(predicted.argmax(-1) == reference[val].argmax(-1)))
    return figures
