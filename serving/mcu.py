"""The microcontroller check of an int8 TFLite model: the TensorFlow Lite for Microcontrollers
interpreter (the ``tflite-micro`` package) runs the model on held-out examples.

It answers what an embedded engineer asks before flashing a model: does it run there at all
(an operator the microcontroller runtime lacks is named), how large a tensor arena it needs
(measured by TFLM's recording allocator, the figure to reserve in firmware), and whether its
answers agree with the TFLite interpreter's on the same examples.

TFLM aborts the process on some failures (e.g. an arena too small), so the model runs in a
``python -m serving.mcu`` subprocess that imports only numpy and tflite-micro.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence

import numpy as np

from serving.tflite import dequantize, quantize

# Generous: the arena actually used is measured and reported; this only has to be enough.
ARENA_BYTES = 64 << 20
_ARENA_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")
# TFLM names an operator it has no kernel for, or one whose kernel refuses the model's types
# (e.g. LOG, float32 only): "Node LOG (number 11) failed to invoke".
_BLOCKING_OP = re.compile(r"(?:Didn't find op for builtin opcode|Failed to get registration "
                          r"from op code) '?([A-Z0-9_]+)'?|Node ([A-Z0-9_]+) \(number \d+\) "
                          r"failed to (?:prepare|invoke)")
_KERNEL_MESSAGE = re.compile(r"\S+\.cc:\d+ .*")
_TAIL = 2000


def check(path: str, x: np.ndarray, expected: np.ndarray, *, timeout_s: float = 600) -> dict:
    """Runs the .tflite file at ``path`` in TFLM over ``x`` (one example at a time) and
    compares its outputs with ``expected`` (the TFLite interpreter's, float32, same shape).

    Returns ``{"runs": True, "arena_bytes", "agreement" (argmax, per example or per frame),
    "max_abs_diff", "n_examples"}``, or ``{"runs": False, "reason", "blocking_operators"}``
    when TFLM cannot load or run it: an operator it has no kernel for, or whose kernel
    refuses the model's tensor types.
    """
    with tempfile.TemporaryDirectory(prefix="mcu-") as tmp:
        inputs, outputs = os.path.join(tmp, "x.npy"), os.path.join(tmp, "y.npy")
        np.save(inputs, np.asarray(x))
        try:
            done = subprocess.run(
                [sys.executable, "-m", "serving.mcu", "--model", os.fspath(path),
                 "--inputs", inputs, "--out", outputs],
                capture_output=True, text=True, timeout=timeout_s,
                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        except subprocess.TimeoutExpired:
            return {"runs": False, "reason": f"TFLM did not finish in {timeout_s:.0f} s",
                    "missing_operators": []}
        if done.returncode != 0 or not os.path.exists(outputs):
            blocking = sorted({a or b for a, b in _BLOCKING_OP.findall(done.stderr)})
            detail = _KERNEL_MESSAGE.search(done.stderr)
            reason = (f"TFLM cannot run operator(s) {', '.join(blocking)}" if blocking else
                      f"TFLM failed (exit status {done.returncode}): "
                      f"{done.stderr.strip()[-_TAIL:]}")
            if blocking and detail:
                reason += f" ({detail.group(0).strip()})"
            return {"runs": False, "reason": reason, "blocking_operators": blocking}
        got = np.load(outputs)
    arena = _ARENA_TOTAL.search(done.stderr)
    expected = np.asarray(expected, np.float32)
    return {
        "runs": True,
        "arena_bytes": int(arena.group(1)) if arena else None,
        "agreement": float(np.mean(np.argmax(got, -1) == np.argmax(expected, -1))),
        "max_abs_diff": float(np.max(np.abs(got - expected))),
        "n_examples": int(len(got)),
    }


def _run(model: str, inputs: str, out: str) -> int:
    """The subprocess: every example through TFLM; the arena report goes to stderr."""
    from tflite_micro import runtime

    with open(model, "rb") as f:
        interpreter = runtime.Interpreter.from_bytes(f.read(), arena_size=ARENA_BYTES)
    inp = interpreter.get_input_details(0)
    out_detail = interpreter.get_output_details(0)

    def params(detail: dict) -> tuple[float, int]:
        q = detail["quantization_parameters"]
        return ((float(q["scales"][0]), int(q["zero_points"][0])) if len(q["scales"])
                else (0.0, 0))

    x = np.load(inputs)
    results = []
    for example in x:
        interpreter.set_input(
            quantize(example[None], inp["dtype"], *params(inp)).reshape(inp["shape"]), 0)
        interpreter.invoke()
        results.append(dequantize(interpreter.get_output(0), *params(out_detail))[0])
    np.save(out, np.stack(results))
    sys.stdout.flush()
    interpreter.print_allocations()  # to stderr: "Arena allocation total N bytes"
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.mcu", description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--inputs", required=True, help=".npy of model inputs [n, ...]")
    parser.add_argument("--out", required=True, help=".npy to write the outputs to")
    args = parser.parse_args(argv)
    return _run(args.model, args.inputs, args.out)


if __name__ == "__main__":
    sys.exit(main())
