"""``suite demo``: every registered app (or one) on its generated demo data with the tiny
preset, in one process (TensorFlow and TFX load once), then one table: the headline metric
on the eval split, the blessing, the pushed version and the TFLite file to ship."""

from __future__ import annotations

import importlib
import json
import os
import time

from apps import registry


def _row(app, workspace: str, code: int, seconds: float) -> dict:
    from components.evaluation_results import evaluation_metrics
    from pipelines.results import latest_run

    row = {"app": app.command, "exit": code, "seconds": seconds}
    metadata = os.path.join(workspace, app.name, "metadata.sqlite")
    if not os.path.exists(metadata):
        return row
    summary = latest_run(metadata, app.command)
    key, label = app.headline_metric
    if summary.evaluation_uri:
        value = evaluation_metrics(summary.evaluation_uri).get("overall", {}).get(key)
        row["metric"] = f"{label} {value:.3f}" if value is not None else "-"
    row["blessed"] = bool(summary.blessed)
    row["version"] = summary.pushed_version if summary.pushed else "-"
    if summary.edge_dir:
        with open(os.path.join(summary.edge_dir, "report.json")) as f:
            report = json.load(f)
        ship = report.get("ship")
        if ship:
            r = report["variants"][ship]
            row["edge"] = (f"{ship}, {r['size_bytes'] / 1024:.1f} KiB, "
                           f"agreement {r['agreement']:.3f}")
    return row


def run_demo(workspace: str, apps: list[str] | None = None) -> int:
    """Runs the apps' demos; prints the table; 0 when every app's model was blessed."""
    names = apps or list(registry.APPS)
    start = time.perf_counter()
    rows = []
    for name in names:
        app = registry.load(name)
        print(f"\n=== {app.command}: demo data, tiny preset ===", flush=True)
        begun = time.perf_counter()
        cli = importlib.import_module(f"apps.{name}.cli")
        code = cli.main(["run", "--preset", "tiny", "--workspace", workspace])
        rows.append(_row(app, workspace, code, time.perf_counter() - begun))
    total = time.perf_counter() - start
    headers = ["app", "metric (eval)", "blessed", "pushed version", "TFLite to ship", "time"]
    table = [[r["app"], r.get("metric", "-"), "yes" if r.get("blessed") else "NO",
              r.get("version", "-"), r.get("edge", "-"), f"{r['seconds']:.0f} s"] for r in rows]
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *table, strict=True)]
    print()
    for line in [headers, *table]:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)))
    print(f"\ndemo of {len(rows)} app(s) in {total:.0f} s; models under "
          f"{os.path.join(workspace, 'serving', 'models')}")
    print("serve them:  suite serve --base " + os.path.join(workspace, "serving", "models"))
    print("call them:   <app> predict --server 127.0.0.1:8500 FILE ...   (or the REST API: "
          "curl localhost:8501/v1/models/<model>/metadata)")
    return 0 if all(r.get("blessed") for r in rows) else 3
