"""Server-side batching: concurrent requests to one signature merged into one model call.

Like TF Serving's shared batch scheduler, a request joins the queue of its (model version,
signature, input dtypes and per-row shapes); a batch thread takes up to ``max_batch_size``
rows from a queue as soon as it is full or its oldest request has waited
``batch_timeout_micros``, runs the model once on the concatenated inputs and splits the
outputs back by rows. Only compatible requests share a queue, so merging never changes an
answer. If a merged call fails, its requests are retried one by one, so a bad request
fails alone. The contract is TF Serving's: every input needs a batch dimension of the same
size, a request larger than ``max_batch_size`` is INVALID_ARGUMENT, and a full queue is
UNAVAILABLE (clients retry).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

import grpc
import numpy as np

from serving.repository import BatchingConfig
from serving.server.errors import ServingError, from_exception, invalid
from serving.server.metrics import Metrics
from serving.server.models import ServableVersion


class _Task:
    """One request waiting for its share of a batch."""

    __slots__ = ("inputs", "rows", "enqueued", "on_done", "outputs", "error")

    def __init__(self, inputs: Mapping[str, np.ndarray], rows: int,
                 on_done: Callable[[_Task], None]):
        self.inputs = inputs
        self.rows = rows
        self.enqueued = time.monotonic()
        self.on_done = on_done
        self.outputs: dict[str, np.ndarray] | None = None
        self.error: ServingError | None = None

    def result(self) -> dict[str, np.ndarray]:
        """The task's outputs (its error is raised)."""
        if self.error is not None:
            raise self.error
        return self.outputs


class _Queue:
    """Requests to one servable signature with compatible inputs."""

    def __init__(self, servable: ServableVersion, signature: str):
        self.servable = servable
        self.signature = signature
        self.tasks: deque[_Task] = deque()
        self.rows = 0

    def take(self, max_rows: int) -> list[_Task]:
        """Removes the oldest tasks that fit in ``max_rows`` rows."""
        batch, rows = [], 0
        while self.tasks and rows + self.tasks[0].rows <= max_rows:
            task = self.tasks.popleft()
            batch.append(task)
            rows += task.rows
        self.rows -= rows
        return batch


def batch_rows(inputs: Mapping[str, np.ndarray], where: str) -> int:
    """The shared 0th dimension of a request's inputs (TF Serving's batching contract)."""
    sizes = set()
    for name, array in inputs.items():
        if array.ndim == 0:
            raise invalid(f"{where}: Batching Run() input tensors must have at least one "
                          f"dimension (input {name!r} is a scalar)")
        sizes.add(array.shape[0])
    if len(sizes) > 1:
        raise invalid(f"{where}: Batching Run() input tensors must have equal 0th-dimension "
                      f"size, got {sorted(sizes)}")
    return sizes.pop() if sizes else 0


class BatchScheduler:
    """Batch threads serving per-signature queues."""

    def __init__(self, options: BatchingConfig, metrics: Metrics):
        self.options = options
        self._metrics = metrics
        self._timeout = options.batch_timeout_micros / 1e6
        self._capacity = options.max_batch_size * options.max_enqueued_batches
        self._queues: dict[tuple, _Queue] = {}
        self._cond = threading.Condition()
        self._stopping = False
        self._threads = [threading.Thread(target=self._work, name=f"batch-{i}", daemon=True)
                         for i in range(options.num_batch_threads)]

    def start(self) -> None:
        """Starts the batch threads."""
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Runs what is queued, then stops the batch threads."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()

    def run(self, servable: ServableVersion, signature: str,
            inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs ``signature`` on ``inputs`` as part of a batch; blocks until answered."""
        done = threading.Event()
        task = self.submit(servable, signature, inputs, lambda _: done.set())
        done.wait()
        return task.result()

    async def run_async(self, servable: ServableVersion, signature: str,
                        inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``run`` for a coroutine: the event loop goes on while the request waits."""
        loop = asyncio.get_running_loop()
        answered = loop.create_future()

        def wake(task: _Task) -> None:  # on a batch thread
            try:
                loop.call_soon_threadsafe(
                    lambda: answered.cancelled() or answered.set_result(task))
            except RuntimeError:  # the loop has closed: nobody waits for the answer
                pass

        self.submit(servable, signature, inputs, wake)
        return (await answered).result()

    def submit(self, servable: ServableVersion, signature: str,
               inputs: Mapping[str, np.ndarray],
               on_done: Callable[[_Task], None]) -> _Task:
        """Queues a request; ``on_done(task)`` is called on a batch thread once its
        outputs (or error) are set. A request that cannot be queued raises at once."""
        where = f"model {servable.name} version {servable.version} signature {signature}"
        rows = batch_rows(inputs, where)
        if rows > self.options.max_batch_size:
            raise invalid(f"{where}: Task size {rows} is larger than maximum input batch size "
                          f"{self.options.max_batch_size}")
        key = (id(servable), signature,
               tuple(sorted((k, v.dtype.str, v.shape[1:]) for k, v in inputs.items())))
        task = _Task(inputs, rows, on_done)
        with self._cond:
            if self._stopping:
                raise ServingError(grpc.StatusCode.UNAVAILABLE, f"{where}: server is stopping")
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = _Queue(servable, signature)
            if queue.rows + rows > self._capacity:
                raise ServingError(grpc.StatusCode.UNAVAILABLE,
                                   f"{where}: The batch scheduling queue to which this task was "
                                   "submitted is full")
            queue.tasks.append(task)
            queue.rows += rows
            self._cond.notify()
        return task

    def _next_batch(self) -> tuple[_Queue, list[_Task]] | None:
        """Waits for a queue that is full or timed out (any queue when stopping)."""
        with self._cond:
            while True:
                now = time.monotonic()
                wait = None
                for key, queue in list(self._queues.items()):
                    age = now - queue.tasks[0].enqueued
                    if (self._stopping or queue.rows >= self.options.max_batch_size
                            or age >= self._timeout):
                        batch = queue.take(self.options.max_batch_size)
                        if not queue.tasks:
                            del self._queues[key]
                        return queue, batch
                    left = self._timeout - age
                    wait = left if wait is None else min(wait, left)
                if self._stopping:
                    return None
                self._cond.wait(wait)

    def _work(self) -> None:
        """A batch thread: runs batches until the scheduler stops."""
        while (item := self._next_batch()) is not None:
            queue, batch = item
            self._process(queue.servable, queue.signature, batch)

    def _process(self, servable: ServableVersion, signature: str, batch: list[_Task]) -> None:
        """Runs one batch and hands each task its rows (or its error)."""
        rows = sum(t.rows for t in batch)
        try:
            if len(batch) == 1:
                merged = batch[0].inputs
            else:
                merged = {k: np.concatenate([t.inputs[k] for t in batch]) for k in batch[0].inputs}
            outputs = servable.run(signature, merged)
            if any(o.ndim == 0 or o.shape[0] != rows for o in outputs.values()):
                raise invalid("Batched output tensors must have the batch size as 0th "
                              f"dimension ({rows}), got shapes "
                              f"{ {k: list(v.shape) for k, v in outputs.items()} }")
        except Exception as e:
            if len(batch) > 1:  # retry alone, so that only a bad request fails
                for task in batch:
                    self._process(servable, signature, [task])
                return
            batch[0].error = from_exception(
                e, f"model {servable.name} version {servable.version} signature {signature}")
            batch[0].on_done(batch[0])
            return
        self._metrics.record_batch(servable.name, rows, len(batch))
        offset = 0
        for task in batch:
            task.outputs = {k: v[offset:offset + task.rows] for k, v in outputs.items()}
            offset += task.rows
            task.on_done(task)
