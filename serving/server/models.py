"""Model versions on disk -> loaded servables, kept in step with the repository.

A ``ModelManager`` polls each model's base path and applies its version policy the way TF
Serving's availability-preserving policy does: a new version is loaded (and warmed up with
its ``assets.extra/tf_serving_warmup_requests``) while the old one keeps serving, becomes
AVAILABLE, and only then is the old version unloaded; if it fails to load (retried on the
next polls, at most ``max_load_attempts`` times) the old version keeps serving. Requests
hold a reference to the version they resolved, so a request in flight during a swap
finishes on the version it started on and never fails. Version states (START, LOADING,
AVAILABLE, UNLOADING, END, with the load error if any) are kept for GetModelStatus.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.eager import context, execute

from serving.repository import ModelEntry
from serving.server.errors import ServingError, from_exception, invalid
from serving.versions import list_versions
from serving.warmup import read_warmup_requests

log = logging.getLogger("serving.server")


def read_signature_defs(model_dir: str, tag: str = "serve") -> dict:
    """The SignatureDefs of the ``tag`` MetaGraph of a SavedModel, as stored in
    saved_model.pb (what TF Serving returns in GetModelMetadata)."""
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(model_dir, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        if tag in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    raise ValueError(f"{model_dir}: no MetaGraph tagged {tag!r} in saved_model.pb")


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal dtype, shape and values (floats to 1e-6, NaN equal to NaN)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind in "fc":
        return bool(np.allclose(a, b, rtol=1e-6, atol=1e-6, equal_nan=True))
    return bool(np.array_equal(a, b))


class _DirectCall:
    """A signature called as its function op, as TF Serving runs a signature's graph.

    The public call of a loaded signature (``fn(**tensors)``) binds keyword arguments,
    flattens them, checks for gradient tapes, resolves captured variables and builds the
    call attributes on every call: about 0.3 ms of Python per request, as much as a small
    model's whole graph. A server has no tape, no distribution strategy and a fixed
    context, so all of that is done once here; a call only orders the tensors, runs the
    op and names the outputs. ``ServableVersion`` checks it against the public call on the
    version's warmup inputs before it serves.
    """

    def __init__(self, fn):
        outputs = fn.structured_outputs
        if not isinstance(outputs, dict) or fn._arg_keywords is None:  # noqa: SLF001
            raise ValueError("not a flat signature (keyword inputs, dict of outputs)")
        self.inputs = list(fn._arg_keywords)  # noqa: SLF001 (the flat input order)
        position = tf.nest.pack_sequence_as(outputs, list(range(len(outputs))))
        self.outputs = sorted(position, key=position.get)
        self._captured = list(fn.captured_inputs)
        self._op = fn._inference_function.name.decode()  # noqa: SLF001
        ctx = context.context()
        self._attrs = tuple(
            item for pair in ctx.function_call_options.as_attrs().items() for item in pair)
        self._ctx = ctx

    def __call__(self, tensors: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        flat = [tensors[name] for name in self.inputs] + self._captured
        results = execute.quick_execute(self._op, len(self.outputs), flat, self._attrs,
                                        self._ctx)
        return dict(zip(self.outputs, results, strict=True))


def _public_call(fn) -> Callable[[Mapping[str, tf.Tensor]], dict]:
    """A signature's public call, taking a dict of tensors like ``_DirectCall``."""
    return lambda tensors: fn(**tensors)


class ServableVersion:
    """One loaded model version: its SignatureDefs and the callable signatures."""

    def __init__(self, name: str, version: int, path: str):
        self.name = name
        self.version = version
        self.path = path
        self.signature_defs = read_signature_defs(path)
        self._loaded = tf.saved_model.load(path, tags=["serve"])
        self.functions = dict(self._loaded.signatures)
        self._calls: dict[str, Callable] = {}
        for signature, fn in self.functions.items():
            try:
                self._calls[signature] = _DirectCall(fn)
            except (AttributeError, ValueError) as e:
                log.info("%s: signature %s runs through the public call (%s)", self,
                         signature, e)
                self._calls[signature] = _public_call(fn)

    def __repr__(self) -> str:
        return f"ServableVersion({self.name!r}, {self.version})"

    def run(self, signature: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs one signature on numpy inputs (already checked against its SignatureDef)."""
        outputs = self._calls[signature]({k: tf.constant(v) for k, v in inputs.items()})
        return {k: v.numpy() for k, v in outputs.items()}

    def check_direct_call(self, signature: str, inputs: Mapping[str, np.ndarray]) -> None:
        """Compares the direct call of ``signature`` with its public call on ``inputs``;
        a difference falls back to the public call for good (and is logged)."""
        call = self._calls[signature]
        if not isinstance(call, _DirectCall):
            return
        tensors = {k: tf.constant(v) for k, v in inputs.items()}
        direct = {k: v.numpy() for k, v in call(tensors).items()}
        public = {k: v.numpy() for k, v in self.functions[signature](**tensors).items()}
        if not (direct.keys() == public.keys() and all(
                _same(direct[k], public[k]) for k in public)):
            log.warning("%s: the direct call of signature %s differs from its public call; "
                        "using the public call", self, signature)
            self._calls[signature] = _public_call(self.functions[signature])

    def warmup_requests(self) -> list:
        """The PredictionLog records of the version's warmup file."""
        return read_warmup_requests(self.path)


@dataclass
class VersionState:
    """GetModelStatus's view of one version."""

    state: str  # START, LOADING, AVAILABLE, UNLOADING or END
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""


class ModelManager:
    """Loads, serves and unloads the versions of the configured models."""

    def __init__(self, entries: Sequence[ModelEntry], *, poll_seconds: float = 1.0,
                 warmup: Callable[[ServableVersion], int] | None = None,
                 max_load_attempts: int = 5):
        self.entries = {e.name: e for e in entries}
        self.poll_seconds = poll_seconds
        self._warmup = warmup
        self._max_load_attempts = max_load_attempts
        self._served: dict[str, dict[int, ServableVersion]] = {n: {} for n in self.entries}
        self._states: dict[str, dict[int, VersionState]] = {n: {} for n in self.entries}
        self._failures: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Loads the initial versions (before returning, as TF Serving does before it
        accepts requests), then keeps polling in a background thread."""
        self.poll()
        self._thread = threading.Thread(target=self._run, name="model-manager", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops polling; loaded versions stay usable until the manager is dropped."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stopping.wait(self.poll_seconds):
            try:
                self.poll()
            except Exception:  # a bad poll must not end polling
                log.exception("polling the model repository failed")

    def poll(self) -> None:
        """Applies every model's version policy to what is on disk now."""
        for entry in self.entries.values():
            self._reconcile(entry)

    def _set_state(self, name: str, version: int, state: VersionState) -> None:
        with self._lock:
            self._states[name][version] = state

    def _reconcile(self, entry: ModelEntry) -> None:
        """Loads the versions the policy wants, then unloads the others."""
        name = entry.name
        aspired = entry.policy.select(list_versions(entry.base_path))
        for version in aspired:
            attempts = self._failures.get((name, version), 0)
            if version in self._served[name] or attempts >= self._max_load_attempts:
                continue
            self._set_state(name, version, VersionState("LOADING"))
            path = os.path.join(entry.base_path, str(version))
            try:
                servable = ServableVersion(name, version, path)
                warmed = self._warmup(servable) if self._warmup else 0
            except Exception as e:
                error = from_exception(e, f"loading model {name} version {version} from {path}")
                self._failures[(name, version)] = attempts + 1
                self._set_state(name, version, VersionState("END", error.code, error.message))
                log.error("%s (attempt %d of %d)", error.message, attempts + 1,
                          self._max_load_attempts)
                continue
            with self._lock:
                self._served[name] = {**self._served[name], version: servable}
                self._states[name][version] = VersionState("AVAILABLE")
            log.info("model %s version %s is AVAILABLE (%d warmup requests)", name, version,
                     warmed)
        stale = sorted(set(self._served[name]) - set(aspired))
        if aspired and not set(self._served[name]) & set(aspired):
            stale = []  # availability preserving: keep serving until a new version loads
        for version in stale:
            self._set_state(name, version, VersionState("UNLOADING"))
            with self._lock:
                self._served[name] = {v: s for v, s in self._served[name].items()
                                      if v != version}
                self._states[name][version] = VersionState("END")
            log.info("model %s version %s unloaded", name, version)

    def _label_version(self, name: str, label: str) -> int:
        """The version a label points to (INVALID_ARGUMENT if none)."""
        version = self.entries[name].labels.get(label)
        if version is None:
            raise invalid(f"Unrecognized servable version label: {label} (model {name} has "
                          f"labels {sorted(self.entries[name].labels)})")
        return version

    def resolve(self, name: str, version: int | None = None,
                label: str | None = None) -> ServableVersion:
        """The servable a request names: a version, a label, or the latest available."""
        if label:
            if name not in self.entries:
                raise ServingError(grpc.StatusCode.NOT_FOUND,
                                   f"Servable not found for request: Latest({name})")
            version = self._label_version(name, label)
        served = self._served.get(name, {})
        if version is not None:
            servable = served.get(version)
            if servable is None:
                raise ServingError(grpc.StatusCode.NOT_FOUND,
                                   f"Servable not found for request: Specific({name}, {version})")
            return servable
        if not served:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Latest({name})")
        return served[max(served)]

    def status(self, name: str, version: int | None = None,
               label: str | None = None) -> list[tuple[int, VersionState]]:
        """(version, state) of one version, or of every version the model ever had."""
        if label and name in self.entries:
            version = self._label_version(name, label)
        with self._lock:
            states = dict(self._states.get(name, {}))
        if version is not None:
            if version not in states:
                raise ServingError(grpc.StatusCode.NOT_FOUND,
                                   f"Could not find version {version} of model {name}")
            return [(version, states[version])]
        if not states:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Could not find any versions of model {name}")
        return sorted(states.items())

    def served_versions(self, name: str) -> list[int]:
        """The versions of ``name`` currently AVAILABLE, ascending."""
        return sorted(self._served.get(name, {}))
