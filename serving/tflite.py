"""TFLite export of a bare serving model: conversion to four variants and their evaluation.

A *bare* model is a SavedModel written by ``keras.export.ExportArchive`` with one endpoint
that maps one input tensor (float32, or integer ids such as item indices) to one float32
output tensor (e.g. class probabilities or item scores). It is converted into one
``.tflite`` flatbuffer per variant:

- ``float32``: no optimization, the reference for the others;
- ``float16``: weights stored as float16, float32 compute and I/O;
- ``dynamic_range``: int8 weights, activations quantized on the fly, float32 I/O;
- ``int8``: full-integer quantization (``TFLITE_BUILTINS_INT8`` only), int8 output and int8
  input (integer inputs keep their type), calibrated on a representative sample of
  training inputs.

Not every model quantizes fully (e.g. some recurrent or attention graphs): variants named
*optional* may fail without failing the export; :func:`convert_variants` reports them as
skipped with the converter's reason. :func:`evaluate` compares each variant with reference
outputs, as a classifier (argmax agreement, accuracy, and AUC when binary) or as a ranker
(top-k agreement, recall@k, MRR@k), and :func:`gate` rejects the variants whose metric drops
by more than a limit and names the variant to ship.

The TFLite converter can abort the whole process (SIGABRT inside MLIR) on some inputs, so
conversions never run in the caller's process: :func:`convert` runs all variants in one
``python -m serving.tflite convert ...`` subprocess (one TensorFlow import, which is slow on
small machines) and turns any failure into a :class:`ConversionError` naming the variant.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from suite.files import write_atomic
from suite.metrics import roc_auc

VARIANTS = ("float32", "float16", "dynamic_range", "int8")

# The int8 calibration only needs the activation ranges; a couple of hundred examples are
# enough and keep the conversion time bounded.
MAX_REPRESENTATIVE = 200
# Progress marker the subprocess writes before each conversion, so that the parent can name
# the variant even when the converter kills the process without a Python traceback.
_PROGRESS = "serving.tflite: converting "
_SKIPPED = "serving.tflite: skipped "
_STDERR_TAIL_CHARS = 3000


class ConversionError(RuntimeError):
    """A TFLite conversion failed (or the converter process crashed or timed out)."""


def _check_variants(variants: Sequence[str]) -> list[str]:
    """Returns the requested variants, de-duplicated in order, rejecting unknown names."""
    if isinstance(variants, str):
        variants = [v for v in variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown TFLite variant(s) {unknown}; expected some of {list(VARIANTS)}")
    if not variants:
        raise ValueError("no TFLite variant requested")
    return list(dict.fromkeys(variants))


def _check_saved_model_dir(saved_model_dir: str) -> None:
    """Fails fast, before paying for a TensorFlow import in the subprocess."""
    if not os.path.isdir(saved_model_dir):
        raise ConversionError(f"SavedModel directory {saved_model_dir!r} does not exist")
    if not any(
        os.path.isfile(os.path.join(saved_model_dir, name))
        for name in ("saved_model.pb", "saved_model.pbtxt")
    ):
        raise ConversionError(
            f"{saved_model_dir!r} is not a SavedModel directory (no saved_model.pb in it)"
        )


def _cli_command(args: list[str]) -> list[str]:
    """The command line of the conversion subprocess (a seam for tests)."""
    return [sys.executable, "-m", "serving.tflite", *args]


def _subprocess_env() -> dict[str, str]:
    """The caller's environment (Keras policy included), with GPUs hidden: conversion does not
    need them, and a second TensorFlow process would otherwise try to grab the memory of a GPU
    the caller may be training on."""
    env = dict(os.environ)
    env["CUDA_VISIBLE_DEVICES"] = "-1"
    env["TF_USE_LEGACY_KERAS"] = "0"
    return env


def _tail(text: str | bytes | None) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return text[-_STDERR_TAIL_CHARS:].strip()


def _skipped_lines(stderr: str) -> dict[str, str]:
    """Optional variants the subprocess reported as skipped, with their reasons."""
    skipped = {}
    for line in stderr.splitlines():
        if line.startswith(_SKIPPED):
            variant, _, reason = line[len(_SKIPPED):].partition(": ")
            skipped[variant.strip()] = reason.strip()
    return skipped


def _last_variant(stderr: str) -> str | None:
    """The variant the subprocess was converting when it stopped, from its progress lines."""
    variant = None
    for line in stderr.splitlines():
        if line.startswith(_PROGRESS):
            variant = line[len(_PROGRESS):].strip()
    return variant


def convert(
    saved_model_dir: str,
    out_dir: str,
    representative: np.ndarray,
    *,
    signature_key: str = "serve",
    variants: Sequence[str] = VARIANTS,
    timeout_s: float = 900,
) -> dict[str, str]:
    """Converts a bare SavedModel into ``out_dir/<variant>.tflite`` for each variant.

    ``representative`` is an array ``[n, ...]`` of model inputs drawn from training data
    (float32, or integers for id inputs); it calibrates the int8 variant. All conversions run
    in one subprocess; each file is written atomically. Returns ``{variant: path}`` in the
    order of ``variants``; raises :class:`ConversionError` naming the failed variant and the
    converter's stderr tail.
    """
    paths, _ = convert_variants(saved_model_dir, out_dir, representative,
                                signature_key=signature_key, variants=variants,
                                timeout_s=timeout_s)
    return paths


def _as_model_input(x: np.ndarray) -> np.ndarray:
    """Integer arrays stay integers (ids); anything else becomes float32."""
    x = np.asarray(x)
    return x if x.dtype.kind in "iu" else x.astype(np.float32)


def convert_variants(
    saved_model_dir: str,
    out_dir: str,
    representative: np.ndarray,
    *,
    signature_key: str = "serve",
    variants: Sequence[str] = VARIANTS,
    optional: Sequence[str] = (),
    timeout_s: float = 900,
) -> tuple[dict[str, str], dict[str, str]]:
    """Like :func:`convert`, but variants in ``optional`` may fail: returns ``(paths,
    skipped)``, ``skipped`` mapping each optional variant that could not be converted to the
    reason. Optional variants are converted after the others, so a converter crash on one of
    them loses no required variant."""
    variants = _check_variants(variants)
    optional = [v for v in _check_variants(optional) if v in variants] if optional else []
    variants = [v for v in variants if v not in optional] + optional
    saved_model_dir = os.fspath(saved_model_dir)
    out_dir = os.fspath(out_dir)
    _check_saved_model_dir(saved_model_dir)
    representative = _as_model_input(representative)
    if representative.ndim < 2 or representative.shape[0] == 0:
        raise ValueError(
            f"representative must be a non-empty [n, ...] array, got shape {representative.shape}"
        )
    os.makedirs(out_dir, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="tflite-convert-") as tmp:
        rep_path = os.path.join(tmp, "representative.npy")
        np.save(rep_path, representative)
        command = _cli_command([
            "convert",
            "--saved-model", saved_model_dir,
            "--out", out_dir,
            "--representative", rep_path,
            "--signature", signature_key,
            "--variants", ",".join(variants),
            *(["--optional", ",".join(optional)] if optional else []),
        ])
        try:
            proc = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
                env=_subprocess_env(),
            )
        except subprocess.TimeoutExpired as e:
            # Partial output of a timed-out run comes back as bytes even with text=True.
            partial = e.stderr.decode("utf-8", "replace") if isinstance(e.stderr, bytes) else ""
            stderr = _tail(partial or e.stderr)
            variant = _last_variant(partial) or "(before the first variant)"
            raise ConversionError(
                f"TFLite conversion of {saved_model_dir!r} timed out after {timeout_s:g} s "
                f"while converting variant {variant}; converter stderr tail:\n{stderr}"
            ) from None

    skipped = _skipped_lines(proc.stderr)
    if proc.returncode != 0:
        stderr = _tail(proc.stderr)
        variant = _last_variant(proc.stderr) or "(before the first variant)"
        how = (
            f"was killed by signal {-proc.returncode}"
            if proc.returncode < 0
            else f"exited with status {proc.returncode}"
        )
        if variant not in optional:
            raise ConversionError(
                f"TFLite conversion of {saved_model_dir!r} failed on variant {variant}: the "
                f"converter process {how}; converter stderr tail:\n{stderr}"
            )
        # A crash (not an exception) on an optional variant: it and those after it are lost.
        for later in optional[optional.index(variant):]:
            skipped[later] = (f"the converter process {how} while converting {variant}"
                              if later == variant else f"not attempted after {variant} crashed")

    paths = {v: os.path.join(out_dir, f"{v}.tflite") for v in variants if v not in skipped}
    missing = [v for v, p in paths.items() if not os.path.isfile(p) or os.path.getsize(p) == 0]
    if missing:
        raise ConversionError(
            f"TFLite conversion of {saved_model_dir!r} reported success but wrote no file for "
            f"variant(s) {missing}; converter stderr tail:\n{_tail(proc.stderr)}"
        )
    return paths, skipped


# --- conversion (subprocess side) --------------------------------------------------------


def _representative_sample(x: np.ndarray) -> np.ndarray:
    """Up to MAX_REPRESENTATIVE examples, spread evenly over x (training data is often
    ordered by class or time, so the first rows would give skewed activation ranges)."""
    if len(x) <= MAX_REPRESENTATIVE:
        return x
    idx = np.linspace(0, len(x) - 1, MAX_REPRESENTATIVE).round().astype(int)
    return x[idx]


def _convert_one(saved_model_dir: str, signature_key: str, variant: str, rep: np.ndarray) -> bytes:
    """Converts the SavedModel to one variant; returns the flatbuffer bytes."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model_dir, signature_keys=[signature_key]
    )
    if variant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic_range":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant == "int8":
        sample = _representative_sample(rep)

        def representative_dataset():
            for i in range(len(sample)):
                yield [sample[i : i + 1]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        # Integer-only kernels, so the model runs on int8-only accelerators (Edge TPU, NPUs).
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if rep.dtype.kind == "f":  # integer inputs (ids) are not quantized
            converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    elif variant != "float32":
        raise ValueError(f"unknown TFLite variant {variant!r}")
    return converter.convert()


def _cli_convert(args: argparse.Namespace) -> int:
    variants = _check_variants(args.variants)
    optional = set(_check_variants(args.optional)) if args.optional else set()
    rep = _as_model_input(np.load(args.representative))
    os.makedirs(args.out, exist_ok=True)
    for variant in variants:
        # Flushed before the converter runs: if it aborts, this is the parent's only clue.
        print(f"{_PROGRESS}{variant}", file=sys.stderr, flush=True)
        try:
            data = _convert_one(args.saved_model, args.signature, variant, rep)
        except Exception as e:  # noqa: BLE001 - any converter error ends the run, readably
            if variant in optional:
                reason = " ".join(f"{type(e).__name__}: {e}".split())[:_STDERR_TAIL_CHARS]
                print(f"{_SKIPPED}{variant}: {reason}", file=sys.stderr, flush=True)
                continue
            print(
                f"error: TFLite conversion of {args.saved_model!r} to variant {variant} failed: "
                f"{type(e).__name__}: {e}",
                file=sys.stderr,
                flush=True,
            )
            return 1
        path = os.path.join(args.out, f"{variant}.tflite")
        write_atomic(path, data)
        print(f"wrote {path} ({len(data)} bytes)", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry: ``python -m serving.tflite convert ...``."""
    parser = argparse.ArgumentParser(
        prog="python -m serving.tflite", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("convert", help="convert a bare SavedModel into .tflite variants")
    p.add_argument("--saved-model", required=True, help="SavedModel directory")
    p.add_argument("--out", required=True, help="output directory for <variant>.tflite")
    p.add_argument("--representative", required=True, help=".npy of training inputs [n, ...]")
    p.add_argument("--signature", default="serve", help="signature key of the endpoint")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated variants")
    p.add_argument("--optional", default="", help="comma-separated variants allowed to fail")
    args = parser.parse_args(argv)
    if args.command == "convert":
        try:
            return _cli_convert(args)
        except (OSError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            return 2
    return 2  # unreachable: the subparser is required


# --- inference and evaluation -------------------------------------------------------------


def quantize(x: np.ndarray, dtype: Any, scale: float, zero_point: int) -> np.ndarray:
    """``x`` as a model input tensor of ``dtype``: float inputs unchanged, integer inputs
    quantized with the tensor's scale and zero point (ids, with no scale, rounded)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return x.astype(dtype)
    q = np.round(x / scale + zero_point) if scale else np.round(x)
    info = np.iinfo(dtype)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(y: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """A model output tensor as float32 (integer outputs dequantized)."""
    if y.dtype.kind == "f":
        return y.astype(np.float32)
    y = y.astype(np.float32)
    return (y - zero_point) * scale if scale else y


class _Runner:
    """One interpreter, with int8 (de)quantization of its single input and output."""

    def __init__(self, path: str, batch_size: int = 1):
        import tensorflow as tf

        self.interpreter = tf.lite.Interpreter(model_path=os.fspath(path))
        inp = self.interpreter.get_input_details()
        out = self.interpreter.get_output_details()
        if len(inp) != 1 or len(out) != 1:
            raise ValueError(
                f"{path}: expected one input and one output tensor, got {len(inp)} and {len(out)}"
            )
        self.input_index = inp[0]["index"]
        self.output_index = out[0]["index"]
        signature = inp[0].get("shape_signature", inp[0]["shape"])
        # Only a dynamic batch dimension can be resized safely; a static one (e.g. a Reshape
        # baked with batch 1) is kept and the examples are fed in chunks of that size.
        self.dynamic_batch = len(signature) > 0 and int(signature[0]) == -1
        self.batch = int(inp[0]["shape"][0]) if len(inp[0]["shape"]) else 1
        self.interpreter.allocate_tensors()
        if self.dynamic_batch:
            self._resize(max(1, int(batch_size)))
        self.batch = max(1, self.batch)

    def _resize(self, n: int) -> None:
        if n == self.batch:
            return
        shape = list(self.interpreter.get_input_details()[0]["shape"])
        shape[0] = n
        self.interpreter.resize_tensor_input(self.input_index, shape, strict=True)
        self.interpreter.allocate_tensors()
        self.batch = n

    def _io(self) -> tuple[dict, dict]:
        # Details are re-read after a resize; quantization parameters do not change.
        return (
            self.interpreter.get_input_details()[0],
            self.interpreter.get_output_details()[0],
        )

    def predict_chunk(self, x: np.ndarray) -> np.ndarray:
        """Runs one chunk of at most ``batch`` examples (padded up for a static batch)."""
        n = len(x)
        if self.dynamic_batch:
            self._resize(n)
        elif n < self.batch:
            pad = np.repeat(x[-1:], self.batch - n, axis=0)
            x = np.concatenate([x, pad], axis=0)
        inp, out = self._io()
        self.interpreter.set_tensor(self.input_index,
                                    quantize(x, inp["dtype"], *inp["quantization"]))
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output_index)
        return dequantize(y, *out["quantization"])[:n]

    def predict(self, x: np.ndarray, batch_size: int) -> np.ndarray:
        step = max(1, int(batch_size)) if self.dynamic_batch else self.batch
        chunks = [self.predict_chunk(x[i : i + step]) for i in range(0, len(x), step)]
        return np.concatenate(chunks, axis=0)


def run_tflite(path: str, x: np.ndarray, batch_size: int = 1) -> np.ndarray:
    """Runs the model over x (``[n, ...]``, float32 or integer ids); returns float32 outputs.

    int8 inputs/outputs are (de)quantized with the tensors' scale and zero point. Batches of
    ``batch_size`` are used when the input's batch dimension is dynamic; otherwise the model's
    own batch size (usually 1).
    """
    x = _as_model_input(x)
    if len(x) == 0:
        raise ValueError("run_tflite: x is empty")
    runner = _Runner(path, batch_size=batch_size)
    return runner.predict(x, batch_size)


def _latencies_ms(runner: _Runner, x: np.ndarray, n: int, warmup: int = 5) -> list[float]:
    """Wall time of single-example predictions (quantize, set, invoke, get, dequantize), as an
    application would see them; warm-up runs first so that lazy allocations are not timed."""
    if runner.dynamic_batch:
        runner._resize(1)
    for i in range(warmup):
        runner.predict_chunk(x[i % len(x) : i % len(x) + 1])
    times = []
    for i in range(n):
        j = i % len(x)
        start = time.perf_counter()
        runner.predict_chunk(x[j : j + 1])
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def _gzip_size(path: str) -> int:
    with open(path, "rb") as f:
        return len(gzip.compress(f.read(), compresslevel=9, mtime=0))


def _argmax(y: np.ndarray) -> np.ndarray:
    """The class per example, or per frame for sequence outputs (``[n, T, classes]``)."""
    return np.argmax(y, axis=-1)


def _auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """ROC AUC of binary ``labels`` by ``scores``; None (JSON-safe) when one class is
    absent."""
    value = roc_auc(labels, scores)
    return None if np.isnan(value) else value


def _top_k(y: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores per row, best first (ties: lower index first)."""
    return np.argsort(-y.reshape(len(y), -1), axis=1, kind="stable")[:, :k]


def evaluate(
    paths: dict[str, str],
    x: np.ndarray,
    reference: np.ndarray,
    labels: np.ndarray | None = None,
    latency_examples: int = 50,
    *,
    batch_size: int = 32,
    top_k: int | None = None,
) -> dict:
    """Evaluates each .tflite variant against reference outputs (e.g. the Keras model's).

    Per variant: ``size_bytes``, ``size_gzip_bytes`` (the file compressed, as a firmware
    image or an over-the-air update carries it), ``latency_ms_mean``, ``latency_ms_p50`` and
    ``latency_ms_p99`` (single-example, after a warm-up; None when ``latency_examples`` is 0),
    ``agreement``, ``max_abs_diff`` (output units) and quality metrics against ``labels``
    (None without labels):
    - classifier (``top_k`` None): ``agreement`` is the share of examples (of frames, for
      sequence outputs ``[n, T, classes]``) whose argmax equals the reference's,
      ``accuracy`` the share of examples whose argmax is the label, and for a binary
      classifier (one or two output columns) ``auc``, the ROC AUC of the last column;
    - ranker (``top_k`` = k): ``agreement`` is the mean overlap of the variant's and the
      reference's top-k sets, ``recall_at_k`` the share whose label (an output index) is in
      the top k, ``mrr_at_k`` the mean reciprocal rank of the label within the top k.
    Returns ``{"variants": {...}, "reference": {metric: ...}, "n_examples": n}`` (plus
    ``"k"`` for a ranker), JSON-safe.
    """
    x = _as_model_input(x)
    reference = np.asarray(reference, dtype=np.float32)
    n = len(x)
    if n == 0:
        raise ValueError("evaluate: x is empty")
    if len(reference) != n:
        raise ValueError(f"evaluate: {n} inputs but {len(reference)} reference outputs")
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != n:
            raise ValueError(f"evaluate: {n} inputs but {len(labels)} labels")
    if top_k is not None and top_k < 1:
        raise ValueError(f"evaluate: top_k must be >= 1, got {top_k}")
    binary = top_k is None and reference.ndim == 2 and reference.shape[1] <= 2

    def predicted(outputs: np.ndarray) -> np.ndarray:
        return _argmax(outputs) if top_k is None else _top_k(outputs, top_k)

    def agreement(got: np.ndarray, expected: np.ndarray) -> float:
        if top_k is None:
            return float(np.mean(got == expected))
        return float(np.mean([len(set(a) & set(b)) / top_k
                              for a, b in zip(got.tolist(), expected.tolist(), strict=True)]))

    def quality(outputs: np.ndarray, got: np.ndarray) -> dict[str, float | None]:
        if top_k is not None:
            if labels is None:
                return {"recall_at_k": None, "mrr_at_k": None}
            hits = got == labels[:, None]
            ranks = np.argmax(hits, axis=1) + 1
            return {"recall_at_k": float(np.mean(hits.any(axis=1))),
                    "mrr_at_k": float(np.mean(np.where(hits.any(axis=1), 1.0 / ranks, 0.0)))}
        values: dict[str, float | None] = {
            "accuracy": float(np.mean(got == labels)) if labels is not None and got.ndim == 1
            else None}
        if binary:
            values["auc"] = _auc(outputs[:, -1], labels) if labels is not None else None
        return values

    ref_predicted = predicted(reference)
    results: dict[str, dict[str, Any]] = {}
    for variant, path in paths.items():
        runner = _Runner(path, batch_size=batch_size)
        outputs = runner.predict(x, batch_size)
        if outputs.shape != reference.shape:
            raise ValueError(
                f"evaluate: variant {variant} outputs shape {outputs.shape}, "
                f"reference has {reference.shape}"
            )
        got = predicted(outputs)
        times = _latencies_ms(runner, x, int(latency_examples)) if latency_examples > 0 else []
        results[variant] = {
            "path": os.fspath(path),
            "size_bytes": int(os.path.getsize(path)),
            "size_gzip_bytes": _gzip_size(path),
            "latency_ms_mean": float(np.mean(times)) if times else None,
            "latency_ms_p50": float(np.median(times)) if times else None,
            "latency_ms_p99": float(np.percentile(times, 99)) if times else None,
            "agreement": agreement(got, ref_predicted),
            "max_abs_diff": float(np.max(np.abs(outputs - reference))),
            **quality(outputs, got),
        }
    report: dict[str, Any] = {
        "variants": results,
        "reference": quality(reference, ref_predicted),
        "n_examples": int(n),
    }
    if top_k is not None:
        report["k"] = int(top_k)
    return report


# A quantized variant this much slower than float32 gets a note in the report (below that,
# single-example timings of small models are within their noise).
SLOWER = 1.1
# The metrics a variant is gated on, and the config field (``edge.*``) of each one's limit.
GATED_METRICS = {"accuracy": "max_accuracy_drop", "auc": "max_auc_drop",
                 "recall_at_k": "max_recall_drop", "mrr_at_k": "max_mrr_drop"}


def gate(report: dict, max_drop: dict[str, float], max_latency_ratio: float) -> dict:
    """Marks each variant of an :func:`evaluate` report accepted or rejected and names the
    one to ship; returns the report, completed in place.

    A variant is rejected when one of its metrics drops by more than ``max_drop[metric]``
    against the reference (the served model) on the same examples. Without labels a
    classifier is gated on its disagreement with the reference (1 - agreement, which bounds
    the accuracy drop) against the accuracy limit. Per variant: ``drop`` (metric -> reference
    minus variant), ``accepted`` and, when rejected, ``rejected`` (why).

    ``ship`` is the smallest accepted variant whose single-example p50 latency is at most
    ``max_latency_ratio`` times the fastest accepted one's (None when none is accepted);
    ``notes`` says where a quantized variant is over 10% slower than float32 on this CPU.
    """
    reference = report.get("reference", {})
    for r in report["variants"].values():
        drops = {m: reference[m] - r[m] for m in GATED_METRICS
                 if m in max_drop and reference.get(m) is not None and r.get(m) is not None}
        if not drops and "accuracy" in max_drop and report.get("k") is None:
            drops = {"disagreement": 1.0 - r["agreement"]}
        limit = {**max_drop, "disagreement": max_drop.get("accuracy")}
        over = [f"{m} drops {d:.4f} > {limit[m]:g}" for m, d in drops.items() if d > limit[m]]
        r["drop"] = drops
        r["accepted"] = not over
        if over:
            r["rejected"] = "; ".join(over) + f" (on {report['n_examples']} held-out examples)"
    accepted = {v: r for v, r in report["variants"].items() if r["accepted"]}
    latencies = [r["latency_ms_p50"] for r in accepted.values() if r["latency_ms_p50"]]
    fastest = min(latencies) if latencies else None
    fast_enough = [v for v, r in accepted.items()
                   if fastest is None or r["latency_ms_p50"] is None
                   or r["latency_ms_p50"] <= max_latency_ratio * fastest]
    report["ship"] = min(fast_enough, key=lambda v: accepted[v]["size_bytes"], default=None)
    report["max_drop"] = dict(max_drop)
    report["max_latency_ratio"] = max_latency_ratio
    notes = []
    base = report["variants"].get("float32", {}).get("latency_ms_p50")
    for variant, r in report["variants"].items():
        if (variant != "float32" and base and r["latency_ms_p50"]
                and r["latency_ms_p50"] > SLOWER * base):
            notes.append(f"{variant} is slower than float32 on this CPU "
                         f"({r['latency_ms_p50']:.3f} vs {base:.3f} ms p50)")
    report["notes"] = notes
    return report


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays, which reports built by hand may hold."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def write_report(report: dict, path: str) -> None:
    """Writes the report as indented JSON, atomically (``suite.files.write_atomic``)."""
    # NaN/inf are not JSON: fail here rather than write a file other tools cannot parse.
    text = json.dumps(report, indent=2, default=_json_default, allow_nan=False)
    write_atomic(os.fspath(path), text + "\n")

if __name__ == "__main__":
    sys.exit(main())
