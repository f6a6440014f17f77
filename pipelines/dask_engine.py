"""Beam on a ``dask.distributed`` cluster: the ``--runner dask`` engine of the data steps.

Beam 2.61's own ``DaskRunner`` cannot run any TFX component (measured): it rejects its own
``--runner`` option as a ``Client`` argument, calls ``wait_for_workers()`` without the worker
count that distributed 2024 requires, does not translate ``Read`` (ExampleGen fails on
``'NoneType' object has no attribute 'map'``), breaks on a one-input ``Flatten``
(StatisticsGen and Transform: ``'PCollection' object is not iterable``), and runs DoFns
without their bundle lifecycle or side inputs (every file write fails on
``'_WriteBundleDoFn' object has no attribute 'writer'``).

``DaskEngine`` is a small runner of its own on the same cluster. It turns the Beam graph into
dask tasks, one per partition of each PCollection, and runs each DoFn with Beam's own
``DoFnRunner`` (setup, start/finish bundle, tagged outputs, side inputs as Beam's
``SideInputMap``). GroupByKey is a hash shuffle on the key coder's bytes, CombinePerKey is
lifted (partial combines per partition, merged per key after the shuffle), a bounded Read is
split into source bundles, and Reshuffle deals elements evenly over the cluster.

Whatever it cannot run (unbounded or non-global windowed grouping, stateful, splittable or
batch-only DoFns, any other primitive) runs in process with Beam's DirectRunner instead, and
so does a pipeline whose run on the cluster fails; both say so on the run output. ``RUNS``
records which engine ran each Beam pipeline of this process.

Without ``--dask_client_address`` the engine starts one local cluster for the whole process
(``--dask_local_workers`` worker processes, one thread each), reused by every component and
closed when the process exits.
"""

from __future__ import annotations

import atexit
import collections
import gc
import hashlib
import itertools
import logging
import os
import threading
import time
import zlib
from dataclasses import dataclass, field

import suite  # noqa: F401  (Keras policy before TensorFlow; dask workers import this module)
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.dask.dask_runner import DaskOptions  # --dask_client_address
from apache_beam.runners.runner import PipelineResult, PipelineRunner, PipelineState

_LOG = logging.getLogger(__name__)


class DaskEngineOptions(PipelineOptions):
    """The engine's options (``--dask_client_address`` is Beam's DaskOptions' own)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--dask_local_workers", type=int, default=0,
                            help="worker processes of the local cluster started when no "
                                 "--dask_client_address is given (0: one per CPU)")
        parser.add_argument("--dask_partitions", type=int, default=0,
                            help="at most this many partitions of a shuffled PCollection "
                                 "(0: twice the cluster's threads)")


@dataclass
class EngineRun:
    """How one Beam pipeline ran: ``engine`` is 'dask' or 'in-process'."""

    labels: tuple[str, ...]  # the pipeline's top-level transforms
    engine: str
    reason: str = ""  # why not on dask
    start: float = 0.0
    end: float = 0.0
    tasks: int = 0
    workers: int = 0


RUNS: list[EngineRun] = []


# -- the cluster --------------------------------------------------------------------------

_CLIENTS: dict[str, object] = {}
_LOCAL: dict[int, object] = {}
_LOCK = threading.Lock()


def client_for(address: str | None, local_workers: int = 0):
    """A ``distributed.Client`` of the scheduler at ``address``, or of this process's local
    cluster (started on first use with ``local_workers`` processes)."""
    from dask import distributed

    with _LOCK:
        if not _CLIENTS and not _LOCAL:
            # Registered after distributed's own exit handlers, so it runs before them.
            atexit.register(shutdown)
        if not address:
            workers = local_workers or os.cpu_count() or 1
            if workers not in _LOCAL:
                _LOCAL[workers] = distributed.LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True,
                    host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR)
            address = _LOCAL[workers].scheduler_address
        client = _CLIENTS.get(address)
        if client is None or client.status != "running":
            client = _CLIENTS[address] = distributed.Client(address, set_as_default=False)
        return client


def shutdown() -> None:
    """Closes the clients and the local clusters this process started."""
    with _LOCK:
        for client in _CLIENTS.values():
            client.close()
        if _LOCAL:  # our own workers: their nannies stop them, kill if need be, quietly
            logging.getLogger("distributed.nanny").setLevel(logging.ERROR)
        for cluster in _LOCAL.values():
            cluster.close()
        _CLIENTS.clear()
        _LOCAL.clear()
    gc.collect()  # at exit: free what the run left while TensorFlow can still clean up


# -- the runner ---------------------------------------------------------------------------

class UnsupportedError(Exception):
    """A part of the pipeline the engine does not run on the cluster."""


class _DoneResult(PipelineResult):
    def __init__(self):
        super().__init__(PipelineState.DONE)

    def wait_until_finish(self, duration=None):
        return self._state

    def metrics(self):
        from apache_beam.runners.direct.direct_metrics import DirectMetrics

        return DirectMetrics()


class DaskEngine(PipelineRunner):
    """Runs a batch Beam pipeline on a dask.distributed cluster (see the module text)."""

    def is_fnapi_compatible(self):
        return True  # no runner-API round trip: the graph is translated as built

    def run_pipeline(self, pipeline, options):
        from suite.progress import say

        labels = tuple(p.full_label for p in pipeline.transforms_stack[0].parts)[:3]
        engine = options.view_as(DaskEngineOptions)
        address = options.view_as(DaskOptions).address
        run = EngineRun(labels=labels, engine="dask", start=time.time())
        RUNS.append(run)
        try:
            client = client_for(address, engine.dask_local_workers)
            threads = sum(client.nthreads().values()) or 1
            graph = _Graph(engine.dask_partitions or 2 * threads)
            graph.walk(pipeline.transforms_stack[0])
            outputs = graph.outputs()
        except UnsupportedError as e:
            return self._in_process(pipeline, options, run, f"the Dask engine cannot run {e}")
        tasks, keys = graph.fused(outputs)
        run.tasks, run.workers = len(tasks), len(client.nthreads())
        try:
            client.get(tasks, keys)
        except Exception as e:  # noqa: BLE001  (any failure on the cluster: rerun in process)
            _LOG.warning("Beam pipeline %s failed on dask: %r", labels, e)
            return self._in_process(pipeline, options, run, f"its run on dask failed: {e!r}")
        run.end = time.time()
        say(f"Beam pipeline {', '.join(labels)} ran on dask ({run.workers} workers, "
            f"{run.tasks} tasks) in {run.end - run.start:.1f} s")
        return _DoneResult()

    @staticmethod
    def _in_process(pipeline, options, run: EngineRun, reason: str):
        from apache_beam.runners.direct.direct_runner import DirectRunner

        from suite.progress import say

        run.engine, run.reason = "in-process", reason[:500]
        say(f"Beam pipeline {', '.join(run.labels)} runs in process: {run.reason}")
        result = DirectRunner().run_pipeline(pipeline, options)
        result.wait_until_finish()
        run.end = time.time()
        return result


# -- translation --------------------------------------------------------------------------

def _global(pcoll) -> bool:
    from apache_beam.transforms.trigger import DefaultTrigger
    from apache_beam.transforms.window import GlobalWindows

    windowing = pcoll.windowing
    return (isinstance(windowing.windowfn, GlobalWindows)
            and windowing.triggerfn == DefaultTrigger())


def _key_coder(pcoll):
    from apache_beam import coders

    coder = coders.registry.get_coder(pcoll.element_type)
    return coder.key_coder() if coder.is_kv_coder() else coders.FastPrimitivesCoder()


def _dumps(value) -> bytes:
    from apache_beam.internal import pickler

    return pickler.dumps(value)


@dataclass
class _Graph:
    """PCollections as lists of dask-delayed partitions (lists of WindowedValues)."""

    partitions: int
    parts: dict = field(default_factory=dict)  # PCollection -> [Delayed]
    consumed: set = field(default_factory=set)

    @staticmethod
    def delayed(fn, *args):
        import dask

        return dask.delayed(fn, pure=False)(*args)

    def input(self, pcoll):
        if not pcoll.is_bounded:
            raise UnsupportedError(f"an unbounded PCollection ({pcoll})")
        self.consumed.add(pcoll)
        return self.parts[pcoll]

    def outputs(self) -> list:
        """One small task per partition of every PCollection nothing consumes (the sinks)."""
        return [self.delayed(len, part) for pcoll, parts in self.parts.items()
                if pcoll not in self.consumed for part in parts]

    @staticmethod
    def fused(outputs: list) -> tuple[dict, list]:
        """The task graph of ``outputs`` with each chain of one-consumer tasks fused into one
        task (as Beam fuses a chain of ParDos into one stage): fewer, larger tasks."""
        from dask.base import collections_to_dsk
        from dask.optimization import cull, fuse_linear

        keys = [o.key for o in outputs]
        tasks, dependencies = cull(dict(collections_to_dsk(outputs, optimize_graph=False)),
                                   keys)
        tasks, _ = fuse_linear(tasks, keys, dependencies, rename_keys=False)
        return tasks, keys

    def walk(self, node) -> None:
        from apache_beam import io
        from apache_beam.transforms import core, util

        transform = node.transform
        if isinstance(transform, io.Read) and isinstance(transform.source,
                                                         io.iobase.BoundedSource):
            return self.read(node)
        if isinstance(transform, util.Reshuffle):
            return self.reshuffle(node)
        if (type(transform) is core.CombinePerKey and not transform.side_inputs
                and _global(node.inputs[0])):
            return self.combine_per_key(node)
        if node.parts:
            for part in node.parts:
                self.walk(part)
            return None
        if transform is None:
            return None
        if node.outputs and all(p in node.inputs for p in node.outputs.values()):
            return None  # an identity, e.g. Create's MaybeReshuffle of one value
        if isinstance(transform, core.Impulse):
            return self.set(node, [self.delayed(_impulse)])
        if isinstance(transform, core.ParDo):
            return self.pardo(node)
        if isinstance(transform, core.GroupByKey):
            return self.group_by_key(node)
        if isinstance(transform, core.Flatten):
            inputs = [self.input(p) for p in node.inputs]
            return self.set(node, list(itertools.chain.from_iterable(inputs)))
        raise UnsupportedError(f"{type(transform).__name__} ({node.full_label})")

    def set(self, node, parts) -> None:
        (pcoll,) = node.outputs.values()
        self.parts[pcoll] = parts

    def pardo(self, node) -> None:
        from apache_beam.runners.common import DoFnSignature

        transform = node.transform
        dofn = transform.fn
        signature = DoFnSignature(dofn)
        if signature.is_stateful_dofn() or signature.is_splittable_dofn():
            raise UnsupportedError(f"a stateful or splittable DoFn ({node.full_label})")
        if not getattr(dofn, "_process_defined", True):
            raise UnsupportedError(f"a batch-only DoFn ({node.full_label})")
        (main,) = [p for p in node.main_inputs.values()]
        sides = [self.delayed(_concat, *self.input(si.pvalue)) for si in transform.side_inputs]
        tags = [tag for tag in node.outputs]
        payload = _dumps((dofn, transform.args, transform.kwargs, main.windowing,
                          [(type(si), si._view_options()) for si in transform.side_inputs],
                          tags, node.full_label))
        token = hashlib.sha1(payload).hexdigest()
        results = [self.delayed(_run_dofn, token, payload, part, sides)
                   for part in self.input(main)]
        for tag, pcoll in node.outputs.items():
            self.parts[pcoll] = [self.delayed(_pick, result, tag) for result in results]

    def width(self, parts: list) -> int:
        """Partitions of a shuffle's output: as many as its input has, at most ``partitions``
        (a small collection stays in a few tasks)."""
        return max(1, min(self.partitions, len(parts)))

    def shuffle(self, bucketed: list, n: int, merge, *args) -> list:
        """``bucketed``: one task per input partition returning ``n`` buckets; ``merge`` gets
        bucket r of every input and makes output partition r."""
        return [self.delayed(merge, *args, *[self.delayed(_pick, b, r) for b in bucketed])
                for r in range(n)]

    def group_by_key(self, node) -> None:
        (pcoll,) = node.inputs
        if not _global(pcoll):
            raise UnsupportedError(
                f"a GroupByKey of windowed or triggered data ({node.full_label})")
        coder = _dumps(_key_coder(pcoll))
        parts = self.input(pcoll)
        n = self.width(parts)
        bucketed = [self.delayed(_bucket, coder, n, part) for part in parts]
        self.set(node, self.shuffle(bucketed, n, _group))

    def combine_per_key(self, node) -> None:
        from apache_beam.transforms.combiners import curry_combine_fn

        transform = node.transform
        (pcoll,) = node.inputs
        fn = curry_combine_fn(transform.fn, transform.args, transform.kwargs)
        payload = _dumps((fn, _key_coder(pcoll)))
        token = hashlib.sha1(payload).hexdigest()
        parts = self.input(pcoll)
        n = self.width(parts)
        bucketed = [self.delayed(_precombine, token, payload, n, part) for part in parts]
        self.set(node, self.shuffle(bucketed, n, _merge_combine, token, payload))

    def reshuffle(self, node) -> None:
        (pcoll,) = node.inputs
        dealt = [self.delayed(_deal, self.partitions, part) for part in self.input(pcoll)]
        self.set(node, self.shuffle(dealt, self.partitions, _concat))

    def read(self, node) -> None:
        source = node.transform.source
        try:
            size = source.estimate_size() or 0
        except Exception:  # noqa: BLE001  (an estimate only)
            size = 0
        bundle = max(1 << 20, size // self.partitions + 1)
        bundles = list(source.split(desired_bundle_size=bundle)) or []
        self.set(node, [self.delayed(_read, _dumps((b.source, b.start_position,
                                                    b.stop_position)))
                        for b in bundles])


# -- what the workers run -----------------------------------------------------------------

_POOLS: collections.OrderedDict = collections.OrderedDict()  # token -> idle instances
_POOL_LOCK = threading.Lock()
_POOL_TOKENS = 256
_EXIT_HOOK = None


def _clear_pools() -> None:
    """At a worker's exit: drop the DoFns (and their TensorFlow functions) before teardown."""
    with _POOL_LOCK:
        _POOLS.clear()
    gc.collect()


def _checkout(token: str, payload: bytes):
    """An idle deserialised instance of ``payload`` (new ones are marked ``fresh``)."""
    from apache_beam.internal import pickler

    global _EXIT_HOOK
    with _POOL_LOCK:
        if not _EXIT_HOOK:  # once per worker process
            _EXIT_HOOK = atexit.register(_clear_pools)
        idle = _POOLS.get(token)
        if idle:
            _POOLS.move_to_end(token)
            return idle.pop(), False
    return pickler.loads(payload), True


def _checkin(token: str, instance) -> None:
    with _POOL_LOCK:
        _POOLS.setdefault(token, []).append(instance)
        _POOLS.move_to_end(token)
        while len(_POOLS) > _POOL_TOKENS:
            _POOLS.popitem(last=False)


def _receiver():
    from apache_beam.runners.common import Receiver

    class ListReceiver(Receiver):
        def __init__(self):
            self.values = []

        def receive(self, windowed_value):
            self.values.append(windowed_value)

    return ListReceiver()


class _Receivers(dict):
    def __missing__(self, tag):  # an output nobody declared: dropped, as Beam does
        receiver = self[tag] = _receiver()
        return receiver


def _run_dofn(token: str, payload: bytes, part: list, sides: list) -> dict:
    """One bundle through the DoFn: {output tag: [WindowedValue]}."""
    from apache_beam.runners.common import DoFnRunner, DoFnState
    from apache_beam.transforms import sideinputs
    from apache_beam.utils.counters import CounterFactory

    (dofn, args, kwargs, windowing, views, tags, label), fresh = _checkout(token, payload)
    receivers = _Receivers({tag: _receiver() for tag in tags})
    side_maps = [sideinputs.SideInputMap(view, options, values)
                 for (view, options), values in zip(views, sides, strict=True)]
    runner = DoFnRunner(dofn, args, kwargs, side_maps, windowing,
                        tagged_receivers=receivers, step_name=label,
                        state=DoFnState(CounterFactory()))
    if fresh:
        runner.setup()
    runner.start()
    for windowed_value in part:
        runner.process(windowed_value)
    runner.finish()
    _checkin(token, (dofn, args, kwargs, windowing, views, tags, label))
    return {tag: receivers[tag].values for tag in tags}


def _pick(collection, key):
    return collection[key]


def _concat(*lists) -> list:
    return list(itertools.chain.from_iterable(lists))


def _impulse() -> list:
    from apache_beam.transforms.window import GlobalWindows

    return [GlobalWindows.windowed_value(b"")]


def _bucket_of(key_bytes: bytes, n: int) -> int:
    return zlib.crc32(key_bytes) % n


def _bucket(coder_payload: bytes, n: int, part: list) -> list:
    from apache_beam.internal import pickler

    coder = pickler.loads(coder_payload)
    buckets = [[] for _ in range(n)]
    for wv in part:
        key, value = wv.value
        key_bytes = coder.encode(key)
        buckets[_bucket_of(key_bytes, n)].append((key_bytes, key, value))
    return buckets


def _end_of_global(value):
    from apache_beam.transforms.window import GlobalWindow
    from apache_beam.utils.windowed_value import WindowedValue

    window = GlobalWindow()
    return WindowedValue(value, window.max_timestamp(), (window,))


def _group(*buckets) -> list:
    groups: dict[bytes, tuple] = {}
    for key_bytes, key, value in itertools.chain.from_iterable(buckets):
        groups.setdefault(key_bytes, (key, []))[1].append(value)
    return [_end_of_global((key, values)) for key, values in groups.values()]


def _precombine(token: str, payload: bytes, n: int, part: list) -> list:
    """Partial combine of one partition: buckets of (key bytes, key, accumulator)."""
    (fn, coder), fresh = _checkout(token, payload)
    if fresh:
        fn.setup()
    accumulators: dict[bytes, list] = {}
    for wv in part:
        key, value = wv.value
        key_bytes = coder.encode(key)
        entry = accumulators.get(key_bytes)
        if entry is None:
            entry = accumulators[key_bytes] = [key, fn.create_accumulator()]
        entry[1] = fn.add_input(entry[1], value)
    buckets = [[] for _ in range(n)]
    for key_bytes, (key, accumulator) in accumulators.items():
        buckets[_bucket_of(key_bytes, n)].append((key_bytes, key, fn.compact(accumulator)))
    _checkin(token, (fn, coder))
    return buckets


def _merge_combine(token: str, payload: bytes, *buckets) -> list:
    (fn, coder), fresh = _checkout(token, payload)
    if fresh:
        fn.setup()
    groups: dict[bytes, tuple] = {}
    for key_bytes, key, accumulator in itertools.chain.from_iterable(buckets):
        groups.setdefault(key_bytes, (key, []))[1].append(accumulator)
    out = [_end_of_global((key, fn.extract_output(fn.merge_accumulators(accumulators))))
           for key, accumulators in groups.values()]
    _checkin(token, (fn, coder))
    return out


def _deal(n: int, part: list) -> list:
    return [part[i::n] for i in range(n)]


def _read(payload: bytes) -> list:
    from apache_beam.internal import pickler
    from apache_beam.transforms.window import GlobalWindows

    source, start, stop = pickler.loads(payload)
    return [GlobalWindows.windowed_value(record)
            for record in source.read(source.get_range_tracker(start, stop))]
