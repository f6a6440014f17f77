"""What every benchmark script shares: its output arguments, plain text tables, and how it
ends (the total wall time, then every figure as JSON when asked). The scripts import it as
``common`` (they run as ``.venv/bin/python benchmarks/<app>.py``, which puts this folder on
the path)."""

from __future__ import annotations

import argparse
import json


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


def print_variants(report: dict) -> None:
    """The TFLite variants of an edge report (``serving.tflite.evaluate``, gated by
    ``serving.tflite.gate``) as a table, then the variant to ship and the report's notes."""
    variants = report["variants"]
    verdicts = {True: "accepted", False: "REJECTED", None: "-"}
    print_table(["variant", "size KiB", "latency ms p50", "latency ms p99", "accuracy",
                 "agreement", "gate"],
                [[name, f"{r['size_bytes'] / 1024:.1f}", fmt(r.get("latency_ms_p50"), 3),
                  fmt(r.get("latency_ms_p99"), 3), fmt(r.get("accuracy")),
                  fmt(r.get("agreement")), verdicts[r.get("accepted")]]
                 for name, r in variants.items()])
    for name, r in variants.items():
        if r.get("rejected"):
            print(f"  {name} rejected: {r['rejected']}")
    if "ship" in report:
        print(f"  ship: {report['ship'] or 'none (no variant passed the gate)'}")
    for note in report.get("notes", []):
        print(f"  note: {note}")


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
