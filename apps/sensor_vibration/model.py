"""Models of the sensor-vibration app, built from config with Keras 3 (no training here)."""

from __future__ import annotations

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras
from keras import layers

from apps.sensor_vibration.config import MODEL_KINDS, VibrationConfig
from apps.sensor_vibration.features import SIGNAL_XF
from blocks.signal.welch_spectrum import remove_window_mean, welch_log_power

# L2 weight of the spectral model's softmax layer: keeps the linear read-out of the
# standardized log spectrum from leaning on a few bins, which is what carries it across
# motor loads.
_SPECTRAL_L2 = 1e-2
# The spectral model's first layer after the Welch log spectrum: where its TFLite files start.
SPECTRAL_HEAD = "standardize"


def _conv_block(x, filters: int, kernel: int, stride: int = 1, name: str = ""):
    x = layers.Conv1D(filters, kernel, strides=stride, padding="same", use_bias=False,
                      name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.ReLU(name=f"{name}_relu")(x)
    return layers.MaxPooling1D(2, name=f"{name}_pool")(x)


def build_model(config: VibrationConfig) -> keras.Model:
    """Returns an uncompiled model: z-scored window [window, channels] -> class probabilities.

    Every kind first removes each window's mean (sensor DC offset).
    wdcnn: a 1D CNN whose wide, strided first kernel acts as a learned filter bank and
    suppresses high-frequency noise (Zhang et al., Sensors 2017), then small kernels.
    lstm / gru: the same wide first convolution shortens the sequence, then a recurrent layer
    reads the feature sequence.
    spectral: the window's log power spectrum (Welch: Hann frames of ``first_kernel`` samples,
    hop ``first_stride``, as fixed DFT convolutions), standardized, read out by a softmax
    layer (after a hidden layer when ``dense_units`` > 0). It carries over to unseen motor
    loads far better than the convolutional and recurrent models, which pick up
    load-specific waveform details.
    ``dense_units`` = 0 leaves out the hidden dense layer (and its dropout).
    """
    m, d = config.model, config.data
    if m.kind not in MODEL_KINDS:
        raise ValueError(f"model.kind: expected one of {MODEL_KINDS}, got {m.kind!r}")
    inputs = keras.Input((d.window, len(d.channels)), name=SIGNAL_XF)
    x = remove_window_mean(inputs)
    regularizer = None
    if m.kind == "spectral":
        if not 2 <= m.first_kernel <= d.window:
            raise ValueError(f"model.first_kernel: the spectral model's frame must be 2 .. "
                             f"data.window ({d.window}) samples, got {m.first_kernel}")
        x = welch_log_power(x, m.first_kernel, m.first_stride, len(d.channels))
        # Per-bin standardization; a short memory so that the inference statistics follow
        # the (shifting) log spectra of the first training steps closely.
        x = layers.BatchNormalization(momentum=0.9, center=False, scale=False,
                                      name=SPECTRAL_HEAD)(x)
        regularizer = keras.regularizers.L2(_SPECTRAL_L2)
    else:
        x = _conv_block(x, m.filters[0], m.first_kernel, m.first_stride, name="wide")
        if m.kind == "wdcnn":
            for i, filters in enumerate(m.filters[1:], start=1):
                x = _conv_block(x, filters, 3, name=f"block{i}")
            x = layers.Flatten(name="flatten")(x)
        else:
            if len(m.filters) > 1:
                x = _conv_block(x, m.filters[1], 3, name="block1")
            recurrent = layers.LSTM if m.kind == "lstm" else layers.GRU
            # Unrolled over the (static) frames: the TFLite converter cannot lower the loop
            # of a recurrent layer with a dynamic batch, and the default preset has few frames.
            x = recurrent(m.rnn_units, unroll=True, name=m.kind)(x)
    if m.dense_units > 0:
        x = layers.Dense(m.dense_units, activation="relu", name="dense")(x)
        x = layers.Dropout(m.dropout, name="dropout")(x)
    outputs = layers.Dense(len(d.classes), activation="softmax", kernel_regularizer=regularizer,
                           name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"sensor_vibration_{m.kind}")


STUDENT_BANDS = 16


def student(teacher: keras.Model) -> keras.Model:
    """The distillation student (serving.distill) of ``teacher``, the model the .tflite files
    carry, with its input and output.

    For the spectral head (the Welch log spectrum in): the spectrum averaged over
    ``STUDENT_BANDS`` bands of equal width, standardized, and a softmax layer: a tenth of the
    head's weights, and the band energies are what separates bearing faults. For a model
    that takes the window: one wide strided convolution (a learned filter bank), one small
    one and global pooling, a few thousand weights instead of the CNN's tens of thousands.
    """
    shape, n_classes = teacher.inputs[0].shape[1:], teacher.outputs[0].shape[-1]
    inputs = keras.Input(shape, name=teacher.inputs[0].name)
    if len(shape) == 1:
        pool = max(1, shape[0] // STUDENT_BANDS)
        x = layers.Reshape((shape[0], 1), name="bins")(inputs)
        x = layers.AveragePooling1D(pool, name="bands")(x)
        x = layers.Flatten(name="band_levels")(x)
        x = layers.BatchNormalization(momentum=0.9, center=False, scale=False,
                                      name="standardize")(x)
    else:
        x = remove_window_mean(inputs)
        x = _conv_block(x, 8, 64, 16, name="wide")
        x = _conv_block(x, 16, 3, name="block1")
        x = layers.GlobalAveragePooling1D(name="pool")(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="sensor_vibration_student")
