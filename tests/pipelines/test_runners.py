"""Runner presets: each Beam engine's options, the ones it cannot go without, the
pass-through, and the options reaching every Beam-based step of a compiled spec; a run
missing an engine option stops before it reads anything."""

from __future__ import annotations

import json

import pytest

import suite  # noqa: F401
from apps.sensor_vibration import cli
from pipelines.runners import SAME_PROCESS_ENVIRONMENT as SAME
from pipelines.runners import EngineOptions, beam_args

DATAFLOW = EngineOptions(project="p", region="europe-west4", temp_location="gs://b/tmp",
                         worker_image="eu.gcr.io/p/suite:1", extra=("--max_num_workers=8",))


@pytest.mark.parametrize("runner, options, expected", [
    ("local", EngineOptions(), ["--direct_running_mode=in_memory", "--direct_num_workers=1",
                                SAME]),
    ("beam", EngineOptions(), ["--direct_running_mode=multi_processing",
                               "--direct_num_workers=3", SAME]),
    ("dask", EngineOptions(), ["--runner=pipelines.dask_engine.DaskEngine",
                               "--dask_local_workers=3", SAME]),
    ("dask", EngineOptions(dask_address="sched:8786"),
     ["--runner=pipelines.dask_engine.DaskEngine", "--dask_client_address=sched:8786", SAME]),
    ("dataflow", DATAFLOW, ["--runner=DataflowRunner", "--project=p", "--region=europe-west4",
                            "--temp_location=gs://b/tmp",
                            "--sdk_container_image=eu.gcr.io/p/suite:1",
                            "--max_num_workers=8"]),
    ("flink", EngineOptions(job_endpoint="flink:8099", worker_image="suite:1"),
     ["--runner=PortableRunner", "--job_endpoint=flink:8099", "--environment_type=DOCKER",
      "--environment_config=suite:1"]),
    ("spark", EngineOptions(job_endpoint="spark:8099", environment_type="LOOPBACK"),
     ["--runner=PortableRunner", "--job_endpoint=spark:8099", "--environment_type=LOOPBACK"]),
])
def test_each_engine_gets_its_options(runner, options, expected):
    assert beam_args(runner, 3, options) == expected


@pytest.mark.parametrize("runner", ["local", "beam", "dask"])
def test_a_local_engine_makes_tfx_build_no_package(runner, tmp_path, monkeypatch):
    """TFX's Beam steps take the options as they are, and build nothing in the temp folder."""
    import tempfile

    from tfx.utils import dependency_utils

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    args = beam_args(runner, 2)
    assert dependency_utils.make_beam_dependency_flags(args) == args
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("runner, missing", [("dataflow", "--beam-project"),
                                             ("flink", "--beam-job-endpoint"),
                                             ("spark", "--beam-job-endpoint")])
def test_an_engine_without_its_required_option_names_it(runner, missing):
    with pytest.raises(ValueError, match=f"--runner {runner} needs {missing}"):
        beam_args(runner)


def test_the_engine_options_reach_every_beam_step_of_the_compiled_spec(tmp_path, capsys):
    out = tmp_path / "spec.json"
    assert cli.main(["compile", "--image", "img:1", "--out", str(out), "--preset", "tiny",
                     "--runner", "dataflow", "--beam-project", "p", "--beam-region", "r",
                     "--beam-temp-location", "gs://b/tmp", "--beam-arg=--max_num_workers=8"]) == 0
    executors = json.loads(out.read_text())["pipelineSpec"]["deploymentSpec"]["executors"]
    for step in ("ImportExampleGen", "StatisticsGen", "Transform", "Evaluator"):
        args = executors[f"{step}_executor"]["container"]["args"]
        text = " ".join(args)
        assert "--runner=DataflowRunner" in text and "--max_num_workers=8" in text, step


def test_a_run_refuses_a_workspace_on_cloud_storage(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = cli.main(["run", "--data", str(tmp_path / "absent"), "--workspace", "gs://b/ws"])
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: --workspace gs://b/ws: expected a local folder"), error
    assert list(tmp_path.iterdir()) == []  # no folder named "gs:"


def test_a_run_missing_an_engine_option_stops_before_reading_data(tmp_path, capsys):
    code = cli.main(["run", "--data", str(tmp_path / "absent"), "--runner", "flink",
                     "--workspace", str(tmp_path / "ws")])
    assert code == 2
    assert capsys.readouterr().err.strip() == "error: --runner flink needs --beam-job-endpoint"
    assert not (tmp_path / "ws").exists()
