"""Magnitude pruning for the edge: the configured sparsity is reached (counted on the
exported .tflite weights), the pruned model still answers like the served one, and its
compressed file is smaller than the dense one's."""

import suite  # noqa: F401  (sets the Keras policy before TensorFlow loads)

import gzip

import keras
import numpy as np
import pytest

from serving import pruning, tflite
from serving.export import export_core_model
from tests import harness


@pytest.fixture(scope="module")
def trained():
    model, x, _ = harness.trained_window_cnn(1200, 1000, filters=16, dense=64,
                                             batch_norm=True, epochs=6)
    return model, x


def test_schedule_rises_to_the_target_and_stays():
    callback = pruning.MagnitudePruning(keras.Sequential([keras.Input((2,)),
                                                          keras.layers.Dense(2)]), 0.8, 100)
    values = [callback.scheduled(s) for s in (0, 25, 50, 100, 200)]
    assert values[0] == 0.0 and values == sorted(values)
    assert values[-2] == values[-1] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="sparsity"):
        pruning.MagnitudePruning(keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)]),
                                 1.0, 10)


def test_pruned_int8_reaches_the_sparsity_agrees_and_compresses(trained, tmp_path):
    model, x = trained
    served = model.predict(x, verbose=0)
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    pruning.prune(copy, x[:1000], served[:1000], 0.7, epochs=4)
    assert pruning.kernel_sparsity(copy) == pytest.approx(0.7, abs=0.005)
    assert pruning.kernel_sparsity(model) < 0.01  # the served model is left alone

    dense = tflite.convert(export_core_model(model, str(tmp_path / "dense")),
                           str(tmp_path / "dense_tflite"), x[:200], variants=["int8"])["int8"]
    sparse = tflite.convert(export_core_model(copy, str(tmp_path / "sparse")),
                            str(tmp_path / "sparse_tflite"), x[:200], variants=["int8"])["int8"]
    # Counted on the exported int8 weights (quantized zero is exact).
    assert pruning.tflite_sparsity(sparse) == pytest.approx(0.7, abs=0.01)
    assert pruning.tflite_sparsity(dense) < 0.02

    def gzipped(path):
        with open(path, "rb") as f:
            return len(gzip.compress(f.read(), 9))

    assert gzipped(sparse) < 0.7 * gzipped(dense)
    held_out = x[1000:]
    agreement = np.mean(tflite.run_tflite(sparse, held_out).argmax(1)
                        == served[1000:].argmax(1))
    assert agreement >= 0.95
