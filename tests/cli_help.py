"""Runs command lines in a fresh interpreter, to check that they answer without loading
TensorFlow or TFX (the command lines must start fast)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("tensorflow", "tfx")


def run_fresh(*commands: tuple[str, list[str]]) -> tuple[list[str], str]:
    """Calls ``main(argv)`` of each (module, argv) in one new interpreter (a SystemExit, as
    from --help, ends that call only); returns the HEAVY packages it imported and what the
    commands printed."""
    code = ("import contextlib, importlib, io, json, sys\n"
            "out = io.StringIO()\n"
            "with contextlib.redirect_stdout(out):\n"
            f"    for module, argv in {list(commands)!r}:\n"
            "        try:\n"
            "            importlib.import_module(module).main(argv)\n"
            "        except SystemExit:\n"
            "            pass\n"
            f"print(json.dumps([[m for m in {HEAVY!r} if m in sys.modules], out.getvalue()]))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded, printed = json.loads(result.stdout.splitlines()[-1])
    return loaded, printed
