"""gRPC front end: ``tensorflow.serving.PredictionService`` and ``ModelService`` servicers.

Built on tensorflow-serving-api's generated ``*_pb2_grpc`` servicers, served by gRPC's
asyncio server: one event loop thread takes every RPC, so a request costs no hand-off
between threads on its way in or out (the sync server passes each request to a thread
pool and back, which doubled the transport cost). Predict runs on the loop (see
``ServingCore.predict_async``); Classify and Regress, which are rarer and may wait for a
batch, run on a small thread pool. Every failure becomes the gRPC status TF Serving would
return (never an exception that reaches gRPC's own handler).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from serving.server.core import ServingCore
from serving.server.errors import ServingError

log = logging.getLogger("serving.server")


async def _serve(core: ServingCore, api: str, method: Callable[..., Awaitable], request,
                 context: grpc.aio.ServicerContext):
    """Runs one RPC through the core; failures become TF Serving's status codes."""
    name = request.model_spec.name if request.HasField("model_spec") else ""
    try:
        response = await method(request)
    except ServingError as e:
        error = e
    except Exception as e:  # never let a bad request take a handler down silently
        log.exception("%s on model %r failed", api, name)
        error = ServingError(grpc.StatusCode.INTERNAL, f"{api} failed: {type(e).__name__}: {e}")
    else:
        core.record_request(name, api, "GRPC", grpc.StatusCode.OK)
        return response
    core.record_request(name, api, "GRPC", error.code)
    await context.abort(error.code, error.message)


def _inline(method: Callable) -> Callable[..., Awaitable]:
    """A quick synchronous core method as a coroutine function (runs on the loop)."""
    async def call(request):
        return method(request)
    return call


def _on_pool(pool: ThreadPoolExecutor, method: Callable) -> Callable[..., Awaitable]:
    """A synchronous core method as a coroutine function running on ``pool``."""
    async def call(request):
        return await asyncio.get_running_loop().run_in_executor(pool, method, request)
    return call


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict, Classify, Regress and GetModelMetadata (MultiInference: UNIMPLEMENTED)."""

    def __init__(self, core: ServingCore, pool: ThreadPoolExecutor):
        self.core = core
        self._classify = _on_pool(pool, core.classify)
        self._regress = _on_pool(pool, core.regress)
        self._metadata = _inline(core.get_model_metadata)

    async def Predict(self, request, context):  # noqa: N802 (gRPC method names)
        return await _serve(self.core, "predict", self.core.predict_async, request, context)

    async def Classify(self, request, context):  # noqa: N802
        return await _serve(self.core, "classify", self._classify, request, context)

    async def Regress(self, request, context):  # noqa: N802
        return await _serve(self.core, "regress", self._regress, request, context)

    async def GetModelMetadata(self, request, context):  # noqa: N802
        return await _serve(self.core, "metadata", self._metadata, request, context)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus (HandleReloadConfigRequest: UNIMPLEMENTED; the config is static)."""

    def __init__(self, core: ServingCore):
        self.core = core

    async def GetModelStatus(self, request, context):  # noqa: N802
        return await _serve(self.core, "status", _inline(self.core.get_model_status), request,
                            context)


def add_services(server: grpc.aio.Server, core: ServingCore, pool: ThreadPoolExecutor) -> None:
    """Registers both services on a gRPC asyncio server."""
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(core, pool), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(core), server)
