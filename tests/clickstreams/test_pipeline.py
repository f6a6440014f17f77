"""End to end: the shared pipeline on a tiny generated click log with LocalDagRunner, through
the command line, checked through ML Metadata; the recommend command on the pushed model;
and the Kubeflow V2 compile of the same pipeline."""

from __future__ import annotations

import json
import os

import pytest

import suite  # noqa: F401
from apps.clickstreams import cli, data
from apps.clickstreams.app import APP
from apps.clickstreams.config import ClickstreamConfig
from components.evaluation_results import evaluation_metrics
from tests import harness

pytestmark = pytest.mark.pipeline


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("clickstreams_pipeline")
    log = data.generate_synthetic(str(root / "events.csv"), "csv", n_sessions=1000, n_items=60,
                                  n_clusters=6)
    workspace = root / "ws"
    code, summary = harness.run_pipeline(
        APP, ["--data", log, "--format", "csv", "--preset", "tiny",
              "--columns", "session_id,item_id,timestamp,event_type"], workspace)
    return code, summary, workspace


def test_every_component_ran_and_the_model_beat_the_baselines(run):
    code, summary, workspace = run
    harness.check_pipeline_run(APP, ClickstreamConfig.preset("tiny"), code, summary, workspace)

    config = json.loads((workspace / "clickstreams" / "config.json").read_text())["config"]
    assert config["data"]["event_column"] == "event_type"
    baseline = config["eval"]["baseline_mrr20"]
    assert baseline > 0 and config["eval"]["catalog_size"] > 0
    overall = evaluation_metrics(summary.evaluation_uri)["overall"]
    assert overall["mrr_at_20"] >= baseline
    assert 0 < overall["ndcg_at_10"] <= 1 and 0 < overall["coverage_at_20"] <= 1
    assert overall["recall_at_20"] >= overall["mrr_at_20"]

    edge = summary.edge_dir
    assert edge == str(workspace / "serving" / "edge" / "clickstreams" / summary.pushed_version)
    report = json.loads(open(os.path.join(edge, "report.json")).read())
    assert report["k"] == 20 and report["vocabularies"] == {"items": "items.txt"}
    assert set(report["variants"]) | set(report["skipped"]) == {
        "float32", "float16", "dynamic_range", "int8"}
    assert {"float32", "float16", "dynamic_range"} <= set(report["variants"])
    assert report["variants"]["float32"]["agreement"] > 0.99
    assert report["reference"]["recall_at_k"] > 0.5
    vocabulary = open(os.path.join(edge, "items.txt")).read().split()
    assert len(vocabulary) == config["eval"]["catalog_size"]


def test_recommend_on_the_pushed_model(run, capsys):
    _, _, workspace = run
    base = str(workspace / "serving" / "models" / "clickstreams")
    capsys.readouterr()
    assert cli.main(["recommend", "--model", base, "--history", "sku-3", "sku-unknown",
                     "-k", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith("note: 1 item(s) of the history are not in the model's "
                               "vocabulary") and lines[2].count("sku-unknown") == 1
    ranked = [line.split()[1] for line in lines[3:]]
    assert len(ranked) == 5 and all(item.startswith("sku-") for item in ranked)


def test_kubeflow_v2_compile_writes_the_same_pipeline(run, tmp_path):
    _, _, workspace = run
    effective = json.loads((workspace / "clickstreams" / "config.json").read_text())
    examples = effective["paths"]["examples_dir"]  # ingested here: its summary has the gate
    out = tmp_path / "pipeline.json"
    assert cli.main(["compile", "--image", "example.com/suite:1", "--out", str(out),
                     "--pipeline-root", "gs://bucket/clicks", "--examples", examples]) == 0
    text = out.read_text()
    assert "apps.clickstreams.trainer.fit" in text
    assert "gs://bucket/clicks/serving/models/clickstreams" in text
    spec = json.loads(text)
    evaluator = spec.get("pipelineSpec", spec)["root"]["dag"]["tasks"]["Evaluator"]
    eval_config = json.loads(evaluator["inputs"]["parameters"]["eval_config"]["runtimeValue"]
                             ["constantValue"]["stringValue"])
    metrics = {m["class_name"]: m for m in eval_config["metrics_specs"][0]["metrics"]}
    assert metrics["MRRAt20"]["module"] == "apps.clickstreams.metrics"
    gate = metrics["MRRAt20"]["threshold"]["value_threshold"]["lower_bound"]
    assert gate == pytest.approx(effective["config"]["eval"]["baseline_mrr20"])
    assert json.loads(metrics["CoverageAt20"]["config"]) == {
        "catalog_size": effective["config"]["eval"]["catalog_size"]}


def test_compiled_spec_replays_task_by_task(run, tmp_path):
    harness.check_replay(APP, run[2], tmp_path / "kfp", ["--preset", "tiny"])
