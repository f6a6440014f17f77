"""What every benchmark script shares: its output arguments, plain text tables, and how it
ends (the total wall time, then every figure as JSON when asked). The scripts import it as
``common`` (they run as ``.venv/bin/python benchmarks/<app>.py``, which puts this folder on
the path)."""

from __future__ import annotations

import argparse
import json
import os


def add_output_arguments(parser: argparse.ArgumentParser, default_workspace: str, *,
                         overrides: str | None = None) -> None:
    """--workspace and --out; with ``overrides`` (what they apply to) also --set."""
    if overrides:
        parser.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                            help=f"override a config field of {overrides}")
    parser.add_argument("--workspace", default=default_workspace, metavar="DIR",
                        help=f"where examples and models go (default: {default_workspace})")
    parser.add_argument("--out", metavar="FILE", help="also write every figure as JSON")


def print_table(headers: list[str], rows: list[list]) -> None:
    """Prints a plain left-aligned text table."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells):
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    print(line(headers))
    print(line(["-" * w for w in widths]))
    for row in rows:
        print(line(row))


def print_variants(report: dict, saved_model_bytes: int | None = None) -> None:
    """The TFLite variants of an edge report (``components.tflite_export``) as a table, with
    the served SavedModel's row first when its size is given: parameters, size, gzip size,
    single-example latency p50 / p99, the metric, its drop and the gate's verdict; then the
    skipped and rejected variants, the notes, the front end a device computes, the
    microcontroller check and the variant to ship. Reports written before a field existed
    show '-' for it."""
    k = report.get("k")
    metric, label = ("recall_at_k", f"recall@{k}") if k else ("accuracy", "accuracy")
    verdicts = {True: "accepted", False: "REJECTED", None: "-"}
    rows = []
    if saved_model_bytes is not None:
        rows.append(["SavedModel", report.get("parameters", "-"),
                     f"{saved_model_bytes / 1024:.1f}", "-", "-", "-",
                     fmt(report.get("reference", {}).get(metric)), "-", "served"])
    for name, r in report["variants"].items():
        gzipped = r.get("size_gzip_bytes")
        rows.append([name, r.get("parameters", report.get("parameters", "-")),
                     f"{r['size_bytes'] / 1024:.1f}",
                     fmt(gzipped and gzipped / 1024, 1), fmt(r.get("latency_ms_p50"), 3),
                     fmt(r.get("latency_ms_p99"), 3), fmt(r.get(metric)),
                     ", ".join(f"{m} {d:+.4f}" for m, d in r.get("drop", {}).items()) or "-",
                     verdicts[r.get("accepted")]])
    print_table(["variant", "parameters", "size KiB", "gzip KiB", "p50 ms", "p99 ms", label,
                 "drop", "gate"], rows)
    for name, reason in report.get("skipped", {}).items():
        print(f"  {name}: skipped ({reason[:200]})")
    for name, r in report["variants"].items():
        if r.get("rejected"):
            print(f"  {name} rejected: {r['rejected']}")
    for note in report.get("notes", []):
        print(f"  note: {note}")
    if report.get("student"):
        from serving.distill import describe

        print(f"  student: {describe(report['student'])}")
    if report.get("front_end"):
        print(f"  front end the device computes: {report['front_end']['computes']}")
    mcu = report.get("mcu") or {}
    if mcu.get("runs"):
        print(f"  TFLite Micro ({mcu['variant']}): arena {mcu['arena_bytes'] / 1024:.1f} KiB, "
              f"agreement {mcu['agreement']:.4f} on {mcu['n_examples']} examples")
    elif mcu:
        print(f"  TFLite Micro ({mcu['variant']}): {mcu.get('reason')}")
    if "ship" in report:
        print(f"  ship: {report['ship'] or 'none (no variant passed the gate)'}")


def folder_bytes(folder: str) -> int:
    """The size of every file under ``folder`` (e.g. a SavedModel)."""
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs)


def fmt(value, digits: int = 4) -> str:
    """A number with ``digits`` decimals, or '-' when missing."""
    return "-" if value is None else f"{value:.{digits}f}"


def _plain(value):
    """numpy scalars as numbers, anything else JSON cannot hold as text."""
    return value.item() if hasattr(value, "item") else str(value)


def finish(results: dict, wall_s: float, out: str | None) -> None:
    """Prints the total wall time and, with ``out``, writes ``results`` there as JSON."""
    print(f"\ntotal wall time {wall_s / 60:.1f} min")
    if out:
        with open(out, "w") as f:
            json.dump(results, f, indent=2, default=_plain)
        print(f"figures written to {out}")
