"""Magnitude pruning of a served model for the edge: a Keras 3 callback that holds the weight
masks, fine-tuning towards the served model's own outputs, and the sparsity of a .tflite.

tensorflow-model-optimization's pruning wrappers are written for tf.keras 2: its 0.8.1
``prune_low_magnitude`` refuses a Keras 3 model (measured: "can only prune an object of the
following types: keras.models.Sequential, ... You passed an object of type: Sequential"),
so the masks live in a small callback:
every ``frequency`` steps it zeroes the smallest-magnitude weights of each prunable kernel
(Dense, convolution, depthwise convolution) up to the scheduled sparsity, which rises from
0 to the target along a cubic schedule (Zhu & Gupta 2017) over the first part of the
fine-tuning, and it re-applies the masks after every step so that pruned weights stay zero.

The fine-tuning needs no labels and nothing app-specific: the pruned copy is trained to
reproduce the served model's outputs on training inputs (cross-entropy against its class
probabilities as soft targets, or mean squared error on scores), with BatchNormalization
frozen. The sparse model is then converted like any
other model; zeros cost nothing once the file is compressed.
"""

from __future__ import annotations

import math

import numpy as np

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras

# Depthwise kernels (a few taps per channel) are left dense: they hold few weights and a
# pruned tap removes a channel's whole spatial filter.
PRUNABLE = ("Dense", "Conv1D", "Conv2D", "SeparableConv2D")


def _kernels(model: keras.Model) -> list:
    """The prunable kernel variables of ``model`` (nested models included)."""
    kernels = []
    for layer in model._flatten_layers(include_self=False):
        if type(layer).__name__ in PRUNABLE:
            for name in ("kernel", "pointwise_kernel"):
                variable = getattr(layer, name, None)
                if variable is not None and variable.trainable:
                    kernels.append(variable)
    return kernels


class MagnitudePruning(keras.callbacks.Callback):
    """Prunes the kernels of ``target`` (the trained model, or the part of it exported) to
    ``sparsity``, reached after ``ramp_steps`` steps, updating the masks every
    ``frequency`` steps."""

    def __init__(self, target: keras.Model, sparsity: float, ramp_steps: int,
                 frequency: int = 10):
        super().__init__()
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"sparsity: expected 0 <= s < 1, got {sparsity}")
        self.kernels = _kernels(target)
        self.sparsity, self.ramp = sparsity, max(1, ramp_steps)
        self.frequency = max(1, frequency)
        self.masks = [np.ones(k.shape, np.float32) for k in self.kernels]
        self.step = 0

    def scheduled(self, step: int) -> float:
        """Cubic ramp from 0 to ``sparsity`` over ``ramp_steps``."""
        done = min(1.0, step / self.ramp)
        return self.sparsity * (1.0 - (1.0 - done) ** 3)

    def _update_masks(self) -> None:
        target = self.scheduled(self.step)
        for i, kernel in enumerate(self.kernels):
            values = np.abs(np.asarray(kernel.numpy()))
            n_pruned = int(math.floor(target * values.size))
            mask = np.ones(values.size, np.float32)
            if n_pruned:
                mask[np.argsort(values, axis=None, kind="stable")[:n_pruned]] = 0.0
            self.masks[i] = mask.reshape(values.shape)

    def apply(self) -> None:
        for kernel, mask in zip(self.kernels, self.masks, strict=True):
            kernel.assign(kernel.numpy() * mask)

    def on_train_begin(self, logs=None):
        self._update_masks()
        self.apply()

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.frequency == 0 or self.step == self.ramp:
            self._update_masks()
        self.apply()

    def on_train_end(self, logs=None):
        self.step = max(self.step, self.ramp)
        self._update_masks()
        self.apply()


def prune(model: keras.Model, x: np.ndarray, targets: np.ndarray, sparsity: float, *,
          epochs: int = 4, batch_size: int = 64, learning_rate: float = 1e-3,
          seed: int = 0) -> keras.Model:
    """Prunes ``model`` in place to ``sparsity`` while fine-tuning it towards ``targets``
    (the served model's outputs on ``x``): cross-entropy against them when they are class
    probabilities (soft targets), mean squared error otherwise (scores); returns it.
    BatchNormalization is frozen (its inference statistics stay those of the full
    training)."""
    keras.utils.set_random_seed(seed)
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    steps = math.ceil(len(x) / batch_size) * epochs
    pruning = MagnitudePruning(model, sparsity, ramp_steps=max(1, int(0.75 * steps)))
    targets = np.asarray(targets, np.float32)
    probabilities = (targets.min() >= 0 and targets.max() <= 1
                     and np.allclose(targets.sum(axis=-1), 1.0, atol=1e-3))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="categorical_crossentropy" if probabilities else "mse")
    model.fit(x, targets, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0,
              callbacks=[pruning])
    return model


def kernel_sparsity(model: keras.Model) -> float:
    """The share of zeros among the prunable kernels' weights."""
    sizes = [(np.asarray(k.numpy()) == 0).sum() for k in _kernels(model)]
    total = sum(int(np.prod(k.shape)) for k in _kernels(model))
    return float(sum(sizes) / total) if total else 0.0


# TFLite operators whose second input is a weight tensor that pruning zeroes.
_WEIGHTED_OPS = {"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D"}


def tflite_sparsity(path: str) -> float:
    """The share of zeros among the weight tensors (filters of fully connected and
    convolution operators) of a .tflite file; for an int8 file these are quantized values,
    whose zero is exact."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=path)
    interpreter.allocate_tensors()
    filters = {int(op["inputs"][1]) for op in interpreter._get_ops_details()
               if op["op_name"] in _WEIGHTED_OPS and len(op["inputs"]) > 1}
    values = [interpreter.get_tensor(i) for i in sorted(filters)]
    total = sum(v.size for v in values)
    return float(sum(int((v == 0).sum()) for v in values) / total) if total else 0.0
