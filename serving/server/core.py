"""What the server does per request, shared by its gRPC and REST front ends.

Each method takes and returns the tensorflow-serving-api messages and raises
``ServingError`` with TF Serving's status codes: an unknown model, version or label is
NOT_FOUND (labels: INVALID_ARGUMENT), a bad input name, dtype or shape is INVALID_ARGUMENT,
an unknown predict signature is FAILED_PRECONDITION.

Classify and Regress: TF Serving answers them from a signature whose method name is
``tensorflow/serving/classify`` (or ``regress``). Keras 3 / TF2 exports only write predict
signatures, and the suite's ``serving_default`` takes serialized tf.Examples (``examples``)
and returns ``classes`` and ``scores`` (plus ``probabilities`` and ``class_ids``). This
server therefore decides by structure, as TF Serving does when its method-name check is
off: a signature can classify when it has exactly one DT_STRING input and a ``classes``
(DT_STRING) and/or ``scores`` (DT_FLOAT) output, and can regress when it has exactly one
DT_STRING input and an ``outputs`` (DT_FLOAT) output. The tf.Examples of the request's
Input (with its context merged into each example) are fed to that input; other outputs
are ignored. Rank-2 ``classes``/``scores`` give one Class per column (TF Serving's
layout); rank-1 ones, as in the suite's models, give the top class per example. Any other
signature is INVALID_ARGUMENT with TF Serving's message.
"""

from __future__ import annotations

import grpc
import numpy as np
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2, get_model_metadata_pb2, get_model_status_pb2, model_pb2,
    predict_pb2, regression_pb2)

from serving.repository import BatchingConfig, ModelEntry
from serving.server.batching import BatchScheduler
from serving.server.errors import ServingError, from_exception, invalid
from serving.server.metrics import Metrics
from serving.server.models import ModelManager, ServableVersion
from serving.server.request_log import RequestLog
from serving.tensor_proto import datatype_of, dtype_name, to_ndarray, to_tensor_proto

DEFAULT_SIGNATURE = "serving_default"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


def _spec_version(spec: model_pb2.ModelSpec) -> tuple[int | None, str | None]:
    """The version or label a ModelSpec asks for (not both)."""
    version = spec.version.value if spec.HasField("version") else None
    label = spec.version_label or None
    if version is not None and label is not None:
        raise invalid(f"Both model version ({version}) and model version label ({label}) "
                      "cannot be supplied.")
    return version, label


def _where(servable: ServableVersion, signature: str) -> str:
    """How error messages name a model version's signature."""
    return f"model {servable.name} version {servable.version} signature {signature}"


def _shape_text(dims) -> str:
    """A shape as TF Serving writes it: [-1,256]."""
    return "[" + ",".join(str(d) for d in dims) + "]"


def _filtered(outputs: dict[str, np.ndarray],
              output_filter: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The outputs a request's output filter asks for (all of them when it is empty)."""
    return {k: v for k, v in outputs.items() if not output_filter or k in output_filter}


def _run_alone(servable: ServableVersion, signature: str,
               inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Runs a signature on one request's inputs; failures become ServingErrors."""
    try:
        return servable.run(signature, inputs)
    except Exception as e:
        raise from_exception(e, _where(servable, signature)) from None


class ServingCore:
    """Models, batching and metrics of one server; answers TF Serving requests."""

    def __init__(self, entries: list[ModelEntry], *, batching: BatchingConfig | None = None,
                 poll_seconds: float = 1.0, metrics: Metrics | None = None,
                 request_log: RequestLog | None = None):
        self.metrics = metrics or Metrics()
        self.request_log = request_log  # a sample of answered requests' examples
        self.manager = ModelManager(entries, poll_seconds=poll_seconds, warmup=self._warmup)
        self.scheduler = BatchScheduler(batching, self.metrics) if batching else None

    def start(self) -> None:
        """Loads the models and starts polling and batching."""
        if self.scheduler:
            self.scheduler.start()
        self.manager.start()

    def stop(self) -> None:
        """Stops polling and batching (queued requests are answered first), then closes
        the request log."""
        self.manager.stop()
        if self.scheduler:
            self.scheduler.stop()
        if self.request_log is not None:
            self.request_log.close()

    def record_request(self, model: str, api: str, entrypoint: str,
                       code: grpc.StatusCode) -> None:
        """Counts a request; names of unknown models are not kept (clients choose them)."""
        self.metrics.record_request(model if model in self.manager.entries else "", api,
                                    entrypoint, code)

    def resolve(self, spec: model_pb2.ModelSpec) -> ServableVersion:
        """The servable version a ModelSpec names."""
        if not spec.name:
            raise invalid("Missing model name in request.")
        version, label = _spec_version(spec)
        return self.manager.resolve(spec.name, version, label)

    # ----------------------------------------------------------------------------------
    # Predict

    def signature_inputs(self, servable: ServableVersion, signature: str) -> dict[str, int]:
        """Input name -> DataType of a predict signature (FAILED_PRECONDITION if unknown)."""
        sigdef = servable.signature_defs.get(signature)
        if sigdef is None or signature not in servable.functions:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               f'Serving signature key "{signature}" not found. '
                               f"({servable.name} version {servable.version} has "
                               f"{sorted(servable.functions)})")
        return {name: info.dtype for name, info in sigdef.inputs.items()}

    def _check_inputs(self, servable: ServableVersion, signature: str,
                      inputs: dict[str, np.ndarray]) -> None:
        """Input names, dtypes and shapes against the SignatureDef (INVALID_ARGUMENT)."""
        sigdef = servable.signature_defs[signature]
        where = _where(servable, signature)
        expected = sorted(sigdef.inputs)
        if len(inputs) != len(expected):
            raise invalid(f"{where}: input size does not match signature: {len(inputs)}!="
                          f"{len(expected)} len([{','.join(sorted(inputs))}]) != "
                          f"len([{','.join(expected)}])")
        for name, array in inputs.items():
            info = sigdef.inputs.get(name)
            if info is None:
                raise invalid(f"{where}: input tensor alias not found in signature: {name}. "
                              f"Inputs expected to be in the set {{{', '.join(expected)}}}.")
            got = datatype_of(array)
            if got != info.dtype:
                raise invalid(f"{where}: Expects arg '{name}' to be {dtype_name(info.dtype)} but "
                              f"{dtype_name(got)} is provided")
            shape = info.tensor_shape
            if not shape.unknown_rank:
                dims = [d.size for d in shape.dim]
                if array.ndim != len(dims) or any(
                        d >= 0 and d != n for d, n in zip(dims, array.shape, strict=True)):
                    raise invalid(f"{where}: input '{name}' expects shape {_shape_text(dims)} "
                                  f"but got {_shape_text(array.shape)}")

    def check_predict(self, servable: ServableVersion, signature: str,
                      inputs: dict[str, np.ndarray], output_filter: tuple[str, ...] = ()) -> None:
        """Checks a predict call's inputs and output filter against the signature (found
        already: every caller has asked ``signature_inputs`` before parsing the inputs)."""
        self._check_inputs(servable, signature, inputs)
        outputs_def = servable.signature_defs[signature].outputs
        for alias in output_filter:
            if alias not in outputs_def:
                raise invalid(f"{_where(servable, signature)}: output tensor alias not found in "
                              f"signature: {alias} Outputs expected to be in the set "
                              f"{{{', '.join(sorted(outputs_def))}}}.")
        if len(set(output_filter)) != len(output_filter):
            raise invalid(f"{_where(servable, signature)}: duplicate output tensor alias in "
                          f"{list(output_filter)}")

    def run_predict(self, servable: ServableVersion, signature: str,
                    inputs: dict[str, np.ndarray],
                    output_filter: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
        """Checks inputs against the signature, runs it (batched when batching is on) and
        returns the requested outputs."""
        self.check_predict(servable, signature, inputs, output_filter)
        outputs = self._run(servable, signature, inputs)
        self._log_predict(servable, signature, inputs)
        return _filtered(outputs, output_filter)

    def _log_predict(self, servable: ServableVersion, signature: str,
                     inputs: dict[str, np.ndarray]) -> None:
        """Logs an answered Predict request when request logging is on."""
        if self.request_log is not None:
            self.request_log.log_predict(servable.signature_defs[signature], inputs)

    def _run(self, servable: ServableVersion, signature: str,
             inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs a signature, through the batch scheduler when batching is on."""
        if self.scheduler is not None:
            return self.scheduler.run(servable, signature, inputs)
        return _run_alone(servable, signature, inputs)

    def _predict_call(self, request: predict_pb2.PredictRequest):
        """The servable, signature, checked input arrays and output filter of a request."""
        servable = self.resolve(request.model_spec)
        signature = request.model_spec.signature_name or DEFAULT_SIGNATURE
        self.signature_inputs(servable, signature)
        inputs = {}
        for name, proto in request.inputs.items():
            try:
                inputs[name] = to_ndarray(proto)
            except (TypeError, ValueError) as e:
                raise invalid(f"{_where(servable, signature)}: tensor parsing error: {name} "
                              f"({e})") from None
        output_filter = tuple(request.output_filter)
        self.check_predict(servable, signature, inputs, output_filter)
        return servable, signature, inputs, output_filter

    def _predict_response(self, servable: ServableVersion, signature: str,
                          outputs: dict[str, np.ndarray]) -> predict_pb2.PredictResponse:
        """A PredictResponse holding ``outputs``."""
        response = predict_pb2.PredictResponse(model_spec=self._model_spec(servable, signature))
        for name, array in outputs.items():
            to_tensor_proto(array, response.outputs[name])
        return response

    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        """PredictionService.Predict."""
        servable, signature, inputs, output_filter = self._predict_call(request)
        outputs = self._run(servable, signature, inputs)
        self._log_predict(servable, signature, inputs)
        return self._predict_response(servable, signature, _filtered(outputs, output_filter))

    async def predict_async(self, request: predict_pb2.PredictRequest
                            ) -> predict_pb2.PredictResponse:
        """PredictionService.Predict on an asyncio event loop: with batching the request
        waits for its batch without holding the loop; without batching the model runs on
        the loop's thread (no hand-off to another thread per request)."""
        servable, signature, inputs, output_filter = self._predict_call(request)
        if self.scheduler is not None:
            outputs = await self.scheduler.run_async(servable, signature, inputs)
        else:
            outputs = _run_alone(servable, signature, inputs)
        self._log_predict(servable, signature, inputs)
        return self._predict_response(servable, signature, _filtered(outputs, output_filter))

    @staticmethod
    def _model_spec(servable: ServableVersion, signature: str = "") -> model_pb2.ModelSpec:
        """The ModelSpec of a response: name, version and signature."""
        spec = model_pb2.ModelSpec(name=servable.name, signature_name=signature)
        spec.version.value = servable.version
        return spec

    # ----------------------------------------------------------------------------------
    # Classify / Regress

    def _examples_signature(self, servable: ServableVersion, signature: str, method: str,
                            outputs: dict[str, int]) -> str:
        """The input name of a classify/regress-capable signature (see module docstring)."""
        sigdef = servable.signature_defs.get(signature)
        where = _where(servable, signature)
        if sigdef is None or signature not in servable.functions:
            raise invalid(f"No signature was found with the name: {signature} ({servable.name} "
                          f"version {servable.version} has {sorted(servable.functions)})")
        if len(sigdef.inputs) != 1:
            raise invalid(f"{where}: Expected one input Tensor.")
        (input_name, info), = sigdef.inputs.items()
        if info.dtype != types_pb2.DT_STRING:
            raise invalid(f"{where}: Expected input Tensor '{input_name}' of type string "
                          f"(serialized tf.Examples), got {dtype_name(info.dtype)}")
        found = {n: d for n, d in outputs.items() if n in sigdef.outputs}
        wrong = [n for n, d in found.items() if sigdef.outputs[n].dtype != d]
        if not found or wrong:
            method_text = "classification" if method == CLASSIFY_METHOD else "regression"
            wanted = " and/or ".join(f"{n!r} ({dtype_name(d)})" for n, d in outputs.items())
            raise invalid(f"{where}: not a {method_text} signature: expected {wanted} "
                          f"output(s), got {sorted(sigdef.outputs)} (method_name "
                          f"{sigdef.method_name!r}; expected {method} or one of these outputs)")
        return input_name

    @staticmethod
    def _serialized_examples(input_proto) -> np.ndarray:
        """The serialized tf.Examples of an Input (context merged into each)."""
        kind = input_proto.WhichOneof("kind")
        if kind == "example_list":
            examples = [e.SerializeToString() for e in input_proto.example_list.examples]
        elif kind == "example_list_with_context":
            context = input_proto.example_list_with_context.context
            examples = []
            for example in input_proto.example_list_with_context.examples:
                merged = type(context)()
                merged.CopyFrom(context)
                merged.MergeFrom(example)
                examples.append(merged.SerializeToString())
        else:
            raise invalid("Input is empty.")
        if not examples:
            raise invalid("Input is empty.")
        return np.array(examples, dtype=object)

    def _run_examples(self, request, method: str, outputs: dict[str, int]):
        """Runs a classify/regress-capable signature on a request's examples."""
        servable = self.resolve(request.model_spec)
        signature = request.model_spec.signature_name or DEFAULT_SIGNATURE
        input_name = self._examples_signature(servable, signature, method, outputs)
        examples = self._serialized_examples(request.input)
        result = self._run(servable, signature, {input_name: examples})
        for name in outputs:
            if name in result and (result[name].ndim == 0
                                   or result[name].shape[0] != len(examples)):
                raise invalid(f"{_where(servable, signature)}: Expected {name} Tensor of shape "
                              f"[{len(examples)}, ...] but got {list(result[name].shape)}")
        if self.request_log is not None:
            self.request_log.log_examples(examples)
        return servable, signature, result

    def classify(self, request: classification_pb2.ClassificationRequest
                 ) -> classification_pb2.ClassificationResponse:
        """PredictionService.Classify."""
        servable, signature, result = self._run_examples(
            request, CLASSIFY_METHOD, {"classes": types_pb2.DT_STRING,
                                       "scores": types_pb2.DT_FLOAT})
        classes, scores = result.get("classes"), result.get("scores")
        response = classification_pb2.ClassificationResponse(
            model_spec=self._model_spec(servable, signature))
        n = len(classes if classes is not None else scores)
        for i in range(n):
            row_classes = None if classes is None else np.atleast_1d(classes[i])
            row_scores = None if scores is None else np.atleast_1d(scores[i])
            item = response.result.classifications.add()
            for j in range(len(row_classes if row_classes is not None else row_scores)):
                entry = item.classes.add()
                if row_classes is not None:
                    label = row_classes[j]
                    entry.label = label.decode() if isinstance(label, bytes) else str(label)
                if row_scores is not None:
                    entry.score = float(row_scores[j])
        return response

    def regress(self, request: regression_pb2.RegressionRequest
                ) -> regression_pb2.RegressionResponse:
        """PredictionService.Regress."""
        servable, signature, result = self._run_examples(
            request, REGRESS_METHOD, {"outputs": types_pb2.DT_FLOAT})
        values = result["outputs"].reshape(len(result["outputs"]), -1)
        if values.shape[1] != 1:
            raise invalid(f"{_where(servable, signature)}: Expected output Tensor shape to be "
                          f"either [batch_size] or [batch_size, 1] but got "
                          f"{list(result['outputs'].shape)}")
        response = regression_pb2.RegressionResponse(
            model_spec=self._model_spec(servable, signature))
        for value in values[:, 0]:
            response.result.regressions.add(value=float(value))
        return response

    # ----------------------------------------------------------------------------------
    # Metadata / status

    def get_model_metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest
                           ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """PredictionService.GetModelMetadata: every SignatureDef of the version."""
        if not request.metadata_field:
            raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != "signature_def":
                raise invalid(f"Metadata field {field} is not supported")
        servable = self.resolve(request.model_spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse(
            model_spec=self._model_spec(servable))
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        for name, sigdef in servable.signature_defs.items():
            signature_defs.signature_def[name].CopyFrom(sigdef)
        response.metadata["signature_def"].Pack(signature_defs)
        return response

    def get_model_status(self, request: get_model_status_pb2.GetModelStatusRequest
                         ) -> get_model_status_pb2.GetModelStatusResponse:
        """ModelService.GetModelStatus."""
        if not request.HasField("model_spec"):
            raise invalid("Missing ModelSpec")
        if not request.model_spec.name:
            raise invalid("Missing model name in request.")
        version, label = _spec_version(request.model_spec)
        response = get_model_status_pb2.GetModelStatusResponse()
        for number, state in self.manager.status(request.model_spec.name, version, label):
            status = response.model_version_status.add(
                version=number, state=get_model_status_pb2.ModelVersionStatus.State.Value(
                    state.state))
            status.status.error_code = state.error_code.value[0]
            status.status.error_message = state.error_message
        return response

    # ----------------------------------------------------------------------------------
    # Warmup

    def _warmup(self, servable: ServableVersion) -> int:
        """Replays the version's warmup requests on it before it serves (as TF Serving
        does); any failure fails the load."""
        records = servable.warmup_requests()
        checked = set()
        for log in records:
            kind = log.WhichOneof("log_type")
            if kind == "predict_log":
                request = log.predict_log.request
                signature = request.model_spec.signature_name or DEFAULT_SIGNATURE
                inputs = {k: to_ndarray(v) for k, v in request.inputs.items()}
                self.signature_inputs(servable, signature)
                self._check_inputs(servable, signature, inputs)
                if signature not in checked:
                    servable.check_direct_call(signature, inputs)
                    checked.add(signature)
                servable.run(signature, inputs)
            elif kind in ("classify_log", "regress_log"):
                request = getattr(log, kind).request
                signature = request.model_spec.signature_name or DEFAULT_SIGNATURE
                method = CLASSIFY_METHOD if kind == "classify_log" else REGRESS_METHOD
                outputs = ({"classes": types_pb2.DT_STRING, "scores": types_pb2.DT_FLOAT}
                           if kind == "classify_log" else {"outputs": types_pb2.DT_FLOAT})
                input_name = self._examples_signature(servable, signature, method, outputs)
                servable.run(signature, {input_name: self._serialized_examples(request.input)})
            else:
                raise ValueError(f"warmup record of type {kind!r} is not supported "
                                 "(expected predict, classify or regress logs)")
        return len(records)
