"""TensorProto <-> numpy: the tensor codec of TF Serving requests and responses.

Shared by the clients (``serving.clients``) and the suite's server (``serving.server``).
The common encodings are read and written directly, as TF Serving writes them (one typed
value per element: ``float_val``, ``string_val``...); anything else goes through
TensorFlow's own ``tf.make_ndarray`` / ``tf.make_tensor_proto``.
"""

from __future__ import annotations

import functools
import math

import suite  # noqa: F401  (Keras policy before TensorFlow)
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

_STRING = types_pb2.DT_STRING
_FIELD = {
    types_pb2.DT_FLOAT: "float_val", types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT32: "int_val", types_pb2.DT_INT16: "int_val", types_pb2.DT_INT8: "int_val",
    types_pb2.DT_UINT8: "int_val", types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val", types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_UINT32: "uint32_val", types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_STRING: "string_val",
}


def dtype_name(dtype: int) -> str:
    """``float`` for DT_FLOAT etc., as TensorFlow writes dtypes in messages."""
    return types_pb2.DataType.Name(dtype)[3:].lower()


def numpy_dtype(dtype: int) -> np.dtype:
    """The numpy dtype holding a TensorFlow DataType (object for strings)."""
    return np.dtype(object) if dtype == _STRING else np.dtype(tf.as_dtype(dtype).as_numpy_dtype)


@functools.cache
def _datatype(dtype: np.dtype) -> int:
    """The TensorFlow DataType enum of a numpy dtype (tf.as_dtype is slow: cached)."""
    if dtype.kind in "OSU":
        return _STRING
    return tf.as_dtype(dtype).as_datatype_enum


def datatype_of(array: np.ndarray) -> int:
    """The TensorFlow DataType enum of a numpy array (DT_STRING for bytes/str/object)."""
    return _datatype(array.dtype)


def to_ndarray(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """A TensorProto as a numpy array (object arrays of bytes for strings).

    The common encodings (``tensor_content``, or one typed value per element) are read
    directly; anything else (a single value filling the shape, half floats...) goes
    through ``tf.make_ndarray``, which handles them all but costs a few times more."""
    shape = [d.size for d in proto.tensor_shape.dim]
    size = math.prod(shape)
    field = _FIELD.get(proto.dtype)
    if field is not None and not proto.tensor_content:
        values = getattr(proto, field)
        if len(values) == size:
            if proto.dtype == _STRING:
                return np.array(list(values) if size else [], dtype=object).reshape(shape)
            return np.array(values, dtype=numpy_dtype(proto.dtype)).reshape(shape)
    elif field is not None and proto.dtype != _STRING:
        dtype = numpy_dtype(proto.dtype)
        if len(proto.tensor_content) == size * dtype.itemsize:
            return np.frombuffer(proto.tensor_content, dtype=dtype).reshape(shape)
    return tf.make_ndarray(proto)


def to_tensor_proto(array: np.ndarray,
                    proto: tensor_pb2.TensorProto | None = None) -> tensor_pb2.TensorProto:
    """A numpy array as a TensorProto with typed value fields (``float_val``, ``string_val``,
    ...), as TF Serving writes outputs; written into ``proto`` when given (e.g. a response's
    output map entry, saving a copy)."""
    array = np.asarray(array)
    dtype = datatype_of(array)
    field = _FIELD.get(dtype)
    if proto is None:
        proto = tensor_pb2.TensorProto()
    if field is None:  # half, bfloat16, complex...: TensorFlow's own encoding
        proto.CopyFrom(tf.make_tensor_proto(array))
        return proto
    proto.dtype = dtype
    for size in array.shape:
        proto.tensor_shape.dim.add().size = size
    flat = array.ravel()
    if dtype == _STRING:
        flat = [v if isinstance(v, bytes) else str(v).encode() for v in flat]
    else:
        flat = flat.tolist()
    getattr(proto, field).extend(flat)
    return proto
