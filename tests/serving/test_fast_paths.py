"""The server's per-request shortcuts against what they replace: TensorProto decoding vs
``tf.make_ndarray``, and the direct signature call vs the public ``fn(**tensors)`` call."""

from __future__ import annotations

import numpy as np
import pytest

import suite  # noqa: F401
import tensorflow as tf

from serving.server.models import ServableVersion, _DirectCall
from serving.tensor_proto import to_ndarray, to_tensor_proto

ARRAYS = [
    np.array([b"a\x00", b"", b"\xff\xfe"], dtype=object),
    np.arange(12, dtype=np.float32).reshape(2, 3, 2) / 7,
    np.arange(6, dtype=np.int64).reshape(3, 2) - 3,
    np.array([-5, 7], dtype=np.int32),
    np.array([1.5, -2.25]),
    np.array([True, False, True]),
    np.arange(4, dtype=np.uint8),
    np.array([0.5, 1.0], dtype=np.float16),  # half_val: decoded by tf.make_ndarray
    np.zeros((0, 4), dtype=np.float32),
    np.array(3.0, dtype=np.float32),
]


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype}{list(a.shape)}")
@pytest.mark.parametrize("encode", [tf.make_tensor_proto, to_tensor_proto],
                         ids=["tensor_content", "typed_values"])
def test_to_ndarray_decodes_like_make_ndarray(array, encode):
    proto = encode(array)
    got, expected = to_ndarray(proto), tf.make_ndarray(proto)
    assert got.dtype == expected.dtype and got.shape == expected.shape == array.shape
    assert got.tolist() == expected.tolist() == array.tolist()


def test_to_ndarray_expands_a_single_value_to_the_shape():
    proto = tf.make_tensor_proto(np.float32(2.0), shape=[2, 3])  # one float_val for 6 values
    np.testing.assert_array_equal(to_ndarray(proto), np.full((2, 3), 2.0, np.float32))


@pytest.fixture(scope="module")
def two_input_model(tmp_path_factory) -> str:
    """A SavedModel whose signature declares its inputs out of alphabetical order."""

    class TwoInputs(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="zeta"),
                                      tf.TensorSpec([None], tf.int64, name="alpha")])
        def combine(self, zeta, alpha):
            return {"weighted": zeta * tf.cast(alpha, tf.float32)[:, None],
                    "count": alpha + 1}

    module = TwoInputs()
    path = str(tmp_path_factory.mktemp("two-inputs") / "1")
    tf.saved_model.save(module, path, signatures={"serving_default": module.combine})
    return path


def test_direct_call_binds_inputs_and_outputs_by_name(two_input_model):
    servable = ServableVersion("two", 1, two_input_model)
    assert isinstance(servable._calls["serving_default"], _DirectCall)
    inputs = {"alpha": np.array([2, -1], np.int64),
              "zeta": np.arange(6, dtype=np.float32).reshape(2, 3)}
    out = servable.run("serving_default", inputs)
    np.testing.assert_array_equal(out["weighted"], [[0, 2, 4], [-3, -4, -5]])
    np.testing.assert_array_equal(out["count"], [3, 0])


def test_direct_call_matches_the_public_call_on_every_signature(pushed_model):
    servable = ServableVersion("sensor_vibration", pushed_model.version,
                               pushed_model.version_dir)
    examples = np.array(pushed_model.eval_examples[:4], dtype=object)
    signal = tf.io.parse_example(list(examples), {"signal": tf.io.FixedLenFeature(
        [pushed_model.window], tf.float32)})["signal"].numpy()
    inputs = {"serving_default": {"examples": examples},
              "transform_features": {"examples": examples},
              "serving_raw": {"signal": signal}}
    assert set(inputs) == set(servable.functions)
    for signature, arrays in inputs.items():
        assert isinstance(servable._calls[signature], _DirectCall), signature
        direct = servable.run(signature, arrays)
        public = servable.functions[signature](**{k: tf.constant(v) for k, v in arrays.items()})
        assert direct.keys() == public.keys()
        for name, value in public.items():
            assert direct[name].dtype == value.numpy().dtype
            assert direct[name].tolist() == value.numpy().tolist(), (signature, name)


def test_a_direct_call_that_disagrees_falls_back_to_the_public_call(pushed_model):
    servable = ServableVersion("sensor_vibration", pushed_model.version,
                               pushed_model.version_dir)
    call = servable._calls["serving_default"]
    call.outputs = call.outputs[::-1]  # outputs bound to the wrong names
    examples = {"examples": np.array(pushed_model.eval_examples[:2], dtype=object)}
    servable.check_direct_call("serving_default", examples)
    assert not isinstance(servable._calls["serving_default"], _DirectCall)
    public = servable.functions["serving_default"](examples=tf.constant(examples["examples"]))
    out = servable.run("serving_default", examples)
    np.testing.assert_array_equal(out["probabilities"], public["probabilities"].numpy())
    assert out["classes"].tolist() == public["classes"].numpy().tolist()
