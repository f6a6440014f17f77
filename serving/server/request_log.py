"""The server's request log: a sample of the examples it served, for ``suite drift``.

``suite serve --log-requests FILE [--log-sample-rate R]`` keeps each request with
probability R (a seeded generator, one draw per request, so a request is logged whole or
not at all) and appends its examples to FILE, a TFRecord file of serialized tf.Example:

- Classify and Regress: the examples of the request's ``Input`` (context merged in);
- Predict on a signature that takes serialized tf.Examples (one string input named
  ``examples`` or ``inputs``): those strings;
- Predict on raw tensors (``serving_raw``): each row becomes a tf.Example with one feature
  per input name; a variable-length input (a ``[batch, -1]`` tensor padded with zeros or
  empty strings) loses its padding, as the served model drops it.

Only requests the model answered are logged. Each record is framed in memory and written
with one ``write`` and a flush, under a lock (gRPC threads, the asyncio loop and REST
threads all log), so a crash leaves whole records only; a file that already exists is
appended to, after a torn last record (power loss, full disk) is cut off. A write the file
system refuses turns logging off with an error in the server log; serving goes on.
"""

from __future__ import annotations

import logging
import os
import random
import struct
import threading
from collections.abc import Mapping, Sequence

import numpy as np
from tensorflow.core.framework import types_pb2

from serving.clients import _example as example_of  # dict of values -> tf.Example

log = logging.getLogger("serving.server")

EXAMPLE_INPUTS = ("examples", "inputs")  # the suite's and TF Serving's example inputs
_HEADER = 12  # uint64 length + masked crc32c of the length


def _crc32c():
    """The CRC-32C function of TFRecord framing (crcmod: apache-beam's dependency)."""
    import crcmod.predefined  # noqa: PLC0415

    return crcmod.predefined.mkPredefinedCrcFun("crc-32c")


def _masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class RequestLog:
    """Appends a sample of served requests' examples to a TFRecord file; thread-safe."""

    def __init__(self, path: str, sample_rate: float = 1.0, seed: int = 0):
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"request log sample rate: expected a number in (0, 1], got "
                             f"{sample_rate}")
        self.path = path
        self.sample_rate = sample_rate
        self.records = 0  # written by this server
        self._crc = _crc32c()
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{path}: the folder {folder} does not exist")
        self._file = open(path, "r+b" if os.path.exists(path) else "wb")  # noqa: SIM115
        try:
            self._file.truncate(self._whole_records_end())
            self._file.seek(0, os.SEEK_END)
        except Exception:
            self._file.close()
            raise

    def _whole_records_end(self) -> int:
        """The offset after the file's last whole record (ValueError: not a TFRecord file)."""
        f, end = self._file, 0
        size = os.fstat(f.fileno()).st_size
        while end + _HEADER <= size:
            f.seek(end)
            header = f.read(_HEADER)
            (length,), (crc,) = struct.unpack("<Q", header[:8]), struct.unpack("<I", header[8:])
            if crc != _masked(self._crc(header[:8])):
                raise ValueError(f"{self.path}: exists and is not a TFRecord file (bad record "
                                 f"header at byte {end}); choose another request log file")
            if end + _HEADER + length + 4 > size:
                break
            end += _HEADER + length + 4
        if end < size:
            log.warning("%s: cut off a torn last record (%d bytes)", self.path, size - end)
        return end

    def _record(self, data: bytes) -> bytes:
        length = struct.pack("<Q", len(data))
        return b"".join((length, struct.pack("<I", _masked(self._crc(length))), data,
                         struct.pack("<I", _masked(self._crc(data)))))

    def sample(self) -> bool:
        """Whether to log the next request (one draw of the seeded generator)."""
        if self.sample_rate >= 1.0:
            return True
        with self._lock:
            return self._random.random() < self.sample_rate

    def write(self, examples: Sequence[bytes]) -> None:
        """Appends one request's serialized examples and flushes them."""
        data = b"".join(self._record(bytes(e)) for e in examples)
        with self._lock:
            if self._file.closed:
                return
            start = self._file.tell()
            try:
                self._file.write(data)
                self._file.flush()
            except OSError as e:
                log.error("request log %s: %s; request logging is off from now on", self.path, e)
                self._close_at(start)
                return
            self.records += len(examples)

    def _close_at(self, offset: int) -> None:
        """Cuts the file back to ``offset`` (best effort) and closes it; lock held."""
        try:
            self._file.truncate(offset)
        except OSError:
            pass
        try:
            self._file.close()
        except OSError:
            pass

    def log_examples(self, examples: Sequence[bytes]) -> None:
        """Logs a Classify / Regress request's serialized examples if it is sampled."""
        if self.sample():
            self.write(examples)

    def log_predict(self, signature_def, inputs: Mapping[str, np.ndarray]) -> None:
        """Logs a Predict request if it is sampled: the serialized examples it carries, or
        its raw tensors as one tf.Example per row. A request that cannot be turned into
        examples is left out with a warning: logging never fails an answered request."""
        if not inputs or not self.sample():
            return
        (name, info), *others = signature_def.inputs.items()
        if not others and name in EXAMPLE_INPUTS and info.dtype == types_pb2.DT_STRING:
            self.write(inputs[name].ravel().tolist())
            return
        try:
            examples = _rows_as_examples(signature_def, inputs)
        except (TypeError, ValueError, IndexError) as e:
            log.warning("request log %s: request not logged (%s)", self.path, e)
            return
        self.write(examples)

    def close(self) -> None:
        """Closes the file (again: nothing)."""
        with self._lock:
            if not self._file.closed:
                self._file.close()


def _variable_length(info) -> bool:
    """Whether a signature input is a padded variable-length feature ([batch, -1])."""
    shape = info.tensor_shape
    return shape.unknown_rank or any(d.size < 0 for d in shape.dim[1:])


def _rows_as_examples(signature_def, inputs: Mapping[str, np.ndarray]) -> list[bytes]:
    """One serialized tf.Example per row of raw input tensors, named by the inputs."""
    padded = {n for n, info in signature_def.inputs.items() if _variable_length(info)}
    rows = len(next(iter(inputs.values())))
    examples = []
    for i in range(rows):
        features = {}
        for name, array in inputs.items():
            row = np.asarray(array[i]).ravel()
            if name in padded:
                row = row[row != (b"" if row.dtype.kind in "OS" else 0)]
            features[name] = row
        examples.append(example_of(features).SerializeToString())
    return examples
