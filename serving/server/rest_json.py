"""TF Serving's REST JSON dialect: request bodies -> numpy arrays and tf.Examples, and
responses -> JSON text.

The rules follow TF Serving's ``util/json_tensor.cc``: row ("instances") and columnar
("inputs") request formats, ``{"b64": ...}`` for bytes, type checks per signature dtype
(lossless numbers only), ``predictions`` / ``outputs`` response shapes, floats written with
the shortest of ``%g`` and full precision that round-trips, NaN/Infinity tokens, and
tf.Examples for classify/regress built from JSON objects.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import sys
from collections.abc import Mapping
from typing import Any

import suite  # noqa: F401  (Keras policy before TensorFlow)
import numpy as np
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.framework import types_pb2

from serving.server.errors import invalid
from serving.tensor_proto import datatype_of, dtype_name, numpy_dtype

_STRING = types_pb2.DT_STRING
_INTEGER = {types_pb2.DT_INT32, types_pb2.DT_INT16, types_pb2.DT_INT8, types_pb2.DT_UINT8,
            types_pb2.DT_INT64, types_pb2.DT_UINT32, types_pb2.DT_UINT64, types_pb2.DT_UINT16}
# Per float type: mantissa bits (larger integers are not exact) and the significant digits
# that always round-trip.
_FLOAT_DIGITS = {types_pb2.DT_FLOAT: (24, 9), types_pb2.DT_DOUBLE: (53, 17)}


# --------------------------------------------------------------------------------------
# JSON -> arrays


def _json_text(value: Any) -> str:
    """A JSON value as short text for error messages."""
    return json.dumps(value)[:200]


def _json_type(value: Any) -> str:
    """The JSON type name TF Serving uses in messages (Number, String...)."""
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float)):
        return "Number"
    return {str: "String", list: "Array", dict: "Object"}.get(type(value), type(value).__name__)


def _type_error(value: Any, dtype: int) -> ValueError:
    """TF Serving's error for a JSON value of the wrong type."""
    return ValueError(f"JSON Value: {_json_text(value)} Type: {_json_type(value)} is not of "
                      f"expected type: {dtype_name(dtype)}")


def is_b64(value: Any) -> bool:
    """True for TF Serving's binary encoding ``{"b64": "<base64>"}``."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _b64_decode(value: dict) -> bytes:
    """The bytes of a {"b64": ...} object."""
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("Unable to base64 decode") from None


def _scalar(value: Any, dtype: int) -> Any:
    """One JSON leaf as a value of ``dtype`` (TF Serving's AddValueToTensor rules)."""
    if dtype == _STRING:
        if isinstance(value, str):
            return value.encode()
        if is_b64(value):
            return _b64_decode(value)
        raise _type_error(value, dtype)
    if isinstance(value, dict):
        raise _type_error(value, dtype)
    if dtype == types_pb2.DT_BOOL:
        if not isinstance(value, bool):
            raise _type_error(value, dtype)
        return value
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _type_error(value, dtype)
    if dtype in _FLOAT_DIGITS:
        mantissa, _ = _FLOAT_DIGITS[dtype]
        lossy = (abs(value) > (1 << mantissa) - 1 if isinstance(value, int)
                 else math.isfinite(value) and dtype == types_pb2.DT_FLOAT
                 and abs(value) > float(np.finfo(np.float32).max))
        if lossy:
            raise ValueError(f"Cannot convert JSON value: {_json_text(value)} to "
                             f"{dtype_name(dtype)} without loss of precision.")
        return value
    if isinstance(value, float):
        raise _type_error(value, dtype)
    info = np.iinfo(numpy_dtype(dtype))
    if not info.min <= value <= info.max:
        raise _type_error(value, dtype)
    return value


def _dense_shape(value: Any) -> list[int]:
    """The shape implied by the first element at each nesting level."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _fill(value: Any, level: int, shape: list[int], dtype: int, out: list) -> None:
    """Appends the leaves of ``value`` to ``out``, checking that it is dense and ``shape``d."""
    if not isinstance(value, list):
        if level != len(shape):
            raise ValueError(f"JSON Value: {_json_text(value)} found at incorrect level: "
                             f"{level + 1} in the JSON DOM. Expected at level: {len(shape)}")
        out.append(_scalar(value, dtype))
        return
    if level >= len(shape):
        raise ValueError(f"Encountered list at unexpected level: {level} expected < "
                         f"{len(shape)}")
    if len(value) != shape[level]:
        raise ValueError(f"Encountered list at unexpected size: {len(value)} at level: "
                         f"{level} expected size: {shape[level]}")
    for item in value:
        _fill(item, level + 1, shape, dtype, out)


def json_to_array(value: Any, dtype: int) -> np.ndarray:
    """A (nested) JSON value as a dense array of ``dtype``; ragged lists are rejected."""
    shape = _dense_shape(value)
    flat: list = []
    _fill(value, 0, shape, dtype, flat)
    array = np.empty(len(flat), dtype=numpy_dtype(dtype))
    array[:] = flat
    return array.reshape(shape)


def _instances(instances: list, input_dtypes: Mapping[str, int]) -> dict[str, np.ndarray]:
    """Input arrays from the row format: one item per batch row, stacked."""
    if not instances:
        raise ValueError("No values in 'instances' array")
    names = sorted(input_dtypes)
    as_objects = isinstance(instances[0], dict) and not is_b64(instances[0])
    if not as_objects and len(names) > 1:
        raise ValueError("instances is a plain list, but expecting list of objects as multiple "
                         "input tensors required as per tensorinfo_map")
    rows: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for i, item in enumerate(instances):
        if as_objects:
            if not isinstance(item, dict) or is_b64(item):
                raise ValueError(f"Expecting object but got list at item {i} of input list")
            if sorted(item) != names:
                raise ValueError(f"Failed to process element: {i} of 'instances' list. JSON "
                                 f"object: {_json_text(item)} keys must be equal to: "
                                 f"{','.join(names)}")
            pairs = item.items()
        else:
            if isinstance(item, dict) and not is_b64(item):
                raise ValueError(f"Expecting value/list but got object at item {i} of input "
                                 "list")
            pairs = [(names[0], item)]
        for name, value in pairs:
            try:
                array = json_to_array(value, input_dtypes[name])
            except ValueError as e:
                raise ValueError(f"Failed to process element: {i} key: {name} of 'instances' "
                                 f"list. Error: {e}") from None
            if rows[name] and array.shape != rows[name][0].shape:
                raise ValueError(f"Failed to process element: {i} key: {name} of 'instances' "
                                 f"list. Error: Expecting shape {list(rows[name][0].shape)} "
                                 f"but got: {list(array.shape)}")
            rows[name].append(array)
    return {name: np.stack(arrays) for name, arrays in rows.items()}


def _columns(inputs: Any, input_dtypes: Mapping[str, int]) -> dict[str, np.ndarray]:
    """Input arrays from the columnar format: one (nested) value per input."""
    if not isinstance(inputs, dict) or is_b64(inputs):
        if len(input_dtypes) > 1:
            raise ValueError("inputs is a plain value/list, but expecting an object as multiple "
                             "input tensors required as per tensorinfo_map")
        (name, dtype), = input_dtypes.items()
        return {name: json_to_array(inputs, dtype)}
    arrays = {}
    for name, dtype in input_dtypes.items():
        if name not in inputs:
            raise ValueError(f"Missing named input: {name} in 'inputs' object.")
        arrays[name] = json_to_array(inputs[name], dtype)
    return arrays


def parse_json_object(body: bytes) -> dict:
    """The request body as a JSON object (NaN and Infinity allowed, as in TF Serving)."""
    if not body:
        raise invalid("JSON Parse error: The document is empty")
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise invalid(f"JSON Parse error: {e}") from None
    except RecursionError:
        # The parser recurses per level; a body nested thousands deep would exhaust it.
        raise invalid("JSON Parse error: nested deeper than the parser's limit of about "
                      f"{sys.getrecursionlimit()} levels") from None
    if not isinstance(document, dict):
        raise invalid(f"JSON Value: {_json_text(document)} Is not object")
    return document


def signature_name(document: dict) -> str:
    """The optional ``signature_name`` of a request (empty when absent)."""
    name = document.get("signature_name", "")
    if not isinstance(name, str):
        raise invalid(f"JSON Value: {_json_text(document)} not formatted correctly. "
                      "'signature_name' key must be a string value.")
    return name


def predict_inputs(document: dict, input_dtypes: Mapping[str, int]) -> tuple[dict, str]:
    """The input arrays of a REST predict request and its format (``row`` or ``columnar``)."""
    if "instances" in document and "inputs" in document:
        raise invalid(f"JSON Value: {_json_text(document)} Not formatted correctly expecting "
                      "only one of 'inputs' or 'instances' keys to exist ")
    try:
        if "instances" in document:
            if not isinstance(document["instances"], list):
                raise ValueError(f"JSON Value: {_json_text(document)} Excepting 'instances' to "
                                 "be an list/array")
            return _instances(document["instances"], input_dtypes), "row"
        if "inputs" in document:
            return _columns(document["inputs"], input_dtypes), "columnar"
    except ValueError as e:
        raise invalid(str(e)) from None
    raise invalid("Missing 'inputs' or 'instances' key")


# --------------------------------------------------------------------------------------
# JSON examples (classify / regress)


def _feature(name: str, value: Any) -> feature_pb2.Feature:
    """A tf.train.Feature from a JSON value or list (one kind per feature)."""
    feature = feature_pb2.Feature()
    for item in value if isinstance(value, list) else [value]:
        if item is None or isinstance(item, list) or (isinstance(item, dict) and not is_b64(item)):
            raise ValueError(f"Feature: {name} has element with unexpected JSON type: "
                             f"{_json_type(item)}")
        if isinstance(item, int):  # JSON true/false become 1/0, as in TF Serving
            kind, item = "int64_list", int(item)
        elif isinstance(item, float):
            if math.isfinite(item) and abs(item) > float(np.finfo(np.float32).max):
                raise ValueError(f"Cannot convert JSON value: {item} to float without loss of "
                                 "precision.")
            kind = "float_list"
        else:
            kind = "bytes_list"
            item = _b64_decode(item) if isinstance(item, dict) else item.encode()
        current = feature.WhichOneof("kind")
        if current not in (None, kind):
            raise ValueError(f"Unexpected element type in feature: {name} expecting type: "
                             f"{current.split('_')[0]}")
        getattr(feature, kind).value.append(item)
    return feature


def json_example(value: Any) -> example_pb2.Example:
    """A tf.Example from a JSON object of feature name -> value or list of values."""
    if not isinstance(value, dict):
        raise ValueError(f"Example must be JSON object but got JSON {_json_type(value)}")
    example = example_pb2.Example()
    for name, content in value.items():
        example.features.feature[name].CopyFrom(_feature(name, content))
    return example


def classify_regress_input(document: dict, input_proto) -> None:
    """Fills a ``tensorflow.serving.Input`` from a REST classify/regress body."""
    try:
        has_context = "context" in document
        if has_context:
            input_proto.example_list_with_context.context.CopyFrom(
                json_example(document["context"]))
        examples = document.get("examples")
        if examples is None:
            raise ValueError(f"JSON Value: {_json_text(document)} When method is classify, key "
                             "'examples' is expected and was not found")
        if not isinstance(examples, list):
            raise ValueError(f"JSON Value: {_json_text(document)} Expecting 'examples' value to "
                             "be an list/array")
        if not examples:
            raise ValueError(f"JSON Value: {_json_text(document)} 'examples' value is an empty "
                             "array")
        target = (input_proto.example_list_with_context.examples if has_context
                  else input_proto.example_list.examples)
        for item in examples:
            target.add().CopyFrom(json_example(item))
    except ValueError as e:
        raise invalid(str(e)) from None


# --------------------------------------------------------------------------------------
# arrays -> JSON


def _decimal(value: float, dtype: int) -> str:
    """A float as TF Serving writes it: %g if that round-trips, else full precision."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    text = f"{value:g}"
    roundtrip = np.float32(float(text)) if dtype == types_pb2.DT_FLOAT else float(text)
    if roundtrip != value:
        text = f"{value:.{_FLOAT_DIGITS[dtype][1]}g}"
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def _leaves(array: np.ndarray, as_bytes: bool) -> list[str]:
    """Every value of an array as JSON text, in row-major order."""
    dtype = datatype_of(array)
    flat = array.ravel()
    if dtype in _FLOAT_DIGITS:
        return [_decimal(v, dtype) for v in flat.tolist()]
    if dtype == types_pb2.DT_BOOL:
        return ["true" if v else "false" for v in flat.tolist()]
    if dtype in _INTEGER:
        return [str(v) for v in flat.tolist()]
    if dtype == _STRING:
        out = []
        for v in flat:
            raw = v if isinstance(v, bytes) else str(v).encode()
            try:
                if as_bytes:
                    raise UnicodeDecodeError("utf-8", raw, 0, 0, "binary output")
                out.append(json.dumps(raw.decode("utf-8")))
            except UnicodeDecodeError:  # bytes (or *_bytes outputs): {"b64": ...}
                out.append('{"b64": ' + json.dumps(base64.b64encode(raw).decode()) + "}")
        return out
    return [_decimal(v, types_pb2.DT_DOUBLE) for v in flat.astype(np.float64).tolist()]


def _nest(leaves: list[str], shape: tuple[int, ...]) -> str:
    """JSON text of nested lists of ``leaves`` shaped ``shape``."""
    if not shape:
        return leaves[0]
    if len(shape) == 1:
        return "[" + ", ".join(leaves) + "]"
    step = len(leaves) // shape[0] if shape[0] else 0
    return "[" + ", ".join(_nest(leaves[i * step:(i + 1) * step], shape[1:])
                           for i in range(shape[0])) + "]"


def array_json(array: np.ndarray, name: str) -> str:
    """One tensor as JSON text; string outputs whose name ends in ``_bytes`` are base64."""
    array = np.asarray(array)
    return _nest(_leaves(array, name.endswith("_bytes")), array.shape)


def predict_response_json(outputs: Mapping[str, np.ndarray], fmt: str) -> str:
    """TF Serving's REST predict response: ``predictions`` (row) or ``outputs`` (columnar);
    one output is written bare, several as objects keyed by output name."""
    names = sorted(outputs)
    if not names:
        raise invalid("Cannot convert empty tensor map to JSON")
    if fmt == "columnar":
        if len(names) == 1:
            return '{"outputs": ' + array_json(outputs[names[0]], names[0]) + "}"
        return '{"outputs": {' + ", ".join(
            f"{json.dumps(n)}: {array_json(outputs[n], n)}" for n in names) + "}}"
    batch = None
    for name in names:
        if outputs[name].ndim == 0:
            raise invalid(f"Tensor name: {name} has no shape information ")
        if batch is not None and outputs[name].shape[0] != batch:
            raise invalid(f"Tensor name: {name} has inconsistent batch size: "
                          f"{outputs[name].shape[0]} expecting: {batch}")
        batch = outputs[name].shape[0]
    rows = []
    for i in range(batch):
        if len(names) == 1:
            rows.append(array_json(outputs[names[0]][i], names[0]))
        else:
            rows.append("{" + ", ".join(f"{json.dumps(n)}: {array_json(outputs[n][i], n)}"
                                        for n in names) + "}")
    return '{"predictions": [' + ", ".join(rows) + "]}"


def classification_json(result) -> str:
    """TF Serving's REST classify response: per example, [label, score] pairs."""
    if not result.classifications:
        raise invalid("Cannot convert empty ClassificationResults to JSON")
    rows = ["[" + ", ".join(f"[{json.dumps(c.label)}, {_decimal(c.score, types_pb2.DT_FLOAT)}]"
                            for c in item.classes) + "]"
            for item in result.classifications]
    return '{"results": [' + ", ".join(rows) + "]}"


def regression_json(result) -> str:
    """TF Serving's REST regress response: one value per example."""
    if not result.regressions:
        raise invalid("Cannot convert empty RegressionResults to JSON")
    values = ", ".join(_decimal(r.value, types_pb2.DT_FLOAT) for r in result.regressions)
    return '{"results": [' + values + "]}"
