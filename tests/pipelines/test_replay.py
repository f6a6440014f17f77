"""The replay of a compiled Kubeflow V2 spec, on a small hand-written spec whose containers
run a short Python program: the order, parameters, artifacts from upstream tasks, the
container's environment, the resolver's queries across replays, and what a failure says.
Every app's own compiled spec is replayed in its pipeline test (harness.check_replay)."""

from __future__ import annotations

import json
import os

import pytest

from pipelines import replay as replay_module
from pipelines.replay import ReplayError, dockerfile_env, replay

# A container program: writes its parameters, its inputs' files and part of its
# environment into its output artifact, and records its output artifacts' metadata.
PROGRAM = """
import json, os, sys
invocation = json.loads(sys.argv[1])
inputs = invocation["inputs"]
if inputs["parameterValues"].get("fail"):
    print("the step failed on purpose", file=sys.stderr)
    sys.exit(3)
seen = {k: [open(os.path.join(a["uri"], "data")).read() for a in v["artifacts"]]
        for k, v in inputs["artifacts"].items()}
env = {k: os.environ.get(k) for k in ("TF_USE_LEGACY_KERAS", "PYTHONPATH", "SPEC_ENV")}
outputs = {}
for key, listed in invocation["outputs"]["artifacts"].items():
    artifact = listed["artifacts"][0]
    os.makedirs(artifact["uri"])
    with open(os.path.join(artifact["uri"], "data"), "w") as f:
        json.dump({"params": inputs["parameterValues"],
                   "legacy": inputs["parameters"], "seen": seen, "env": env,
                   "home": os.environ["HOME"], "cwd": os.getcwd()}, f)
    outputs[key] = {"artifacts": [{"name": artifact["name"], "uri": artifact["uri"],
                                   "metadata": {"quality": inputs["parameterValues"]["q"]}}]}
with open(invocation["outputs"]["outputFile"], "w") as f:
    json.dump({"artifacts": outputs}, f)
"""


def _container(env=None):
    spec = {"image": "example.com/suite:test", "command": ["python", "-c", PROGRAM],
            "args": ["{{$}}"]}
    if env:
        spec["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return {"container": spec}


def _artifacts(*keys, title="tfx.Model"):
    return {"artifacts": {k: {"artifactType": {"instanceSchema": f"title: {title}\ntype: "
                                                                  "object\n"}}
                          for k in keys}}


def _constant(value):
    kind = "intValue" if isinstance(value, int) else "stringValue"
    return {"runtimeValue": {"constantValue": {kind: str(value)}}}


def _spec(root: str, *, fail_train: bool = False) -> dict:
    """Three tasks (listed out of order): ``prepare`` -> ``train`` -> ``report``; a resolver
    pair that finds the newest ``tfx.Model`` with quality 2; ``report`` also takes it."""
    train_params = {"q": _constant(2), "name": {"componentInputParameter": "model_name"}}
    if fail_train:
        train_params["fail"] = _constant(1)
    tasks = {
        "report": {"componentRef": {"name": "report"}, "dependentTasks": ["train"],
                   "inputs": {"parameters": {"q": _constant(0)}, "artifacts": {
                       "model": {"taskOutputArtifact": {"producerTask": "train",
                                                        "outputArtifactKey": "model"}},
                       "baseline": {"taskOutputArtifact": {"producerTask": "best",
                                                           "outputArtifactKey": "model"}}}}},
        "train": {"componentRef": {"name": "train"},
                  "inputs": {"parameters": train_params, "artifacts": {
                      "data": {"taskOutputArtifact": {"producerTask": "prepare",
                                                      "outputArtifactKey": "data"}}}}},
        "prepare": {"componentRef": {"name": "prepare"},
                    "inputs": {"parameters": {"q": _constant(1), "text": _constant("a b")}}},
        "newest": {"componentRef": {"name": "newest"}},
        "best": {"componentRef": {"name": "best"}, "inputs": {"artifacts": {
            "input": {"taskOutputArtifact": {"producerTask": "newest",
                                             "outputArtifactKey": "model"}}}}},
    }
    components = {
        "prepare": {"executorLabel": "prepare_executor",
                    "outputDefinitions": _artifacts("data", title="tfx.Examples")},
        "train": {"executorLabel": "train_executor",
                  "inputDefinitions": _artifacts("data", title="tfx.Examples"),
                  "outputDefinitions": _artifacts("model")},
        "report": {"executorLabel": "report_executor",
                   "inputDefinitions": _artifacts("model", "baseline"),
                   "outputDefinitions": _artifacts("report", title="components.RunReport")},
        "newest": {"executorLabel": "newest_executor", "outputDefinitions": _artifacts("model")},
        "best": {"executorLabel": "best_executor", "outputDefinitions": _artifacts("model")},
    }
    executors = {
        "prepare_executor": _container(),
        "train_executor": _container({"SPEC_ENV": "from the spec"}),
        "report_executor": _container(),
        "newest_executor": {"resolver": {"outputArtifactQueries": {"model": {
            "filter": 'schema_title="tfx.Model" AND state=LIVE AND '
                      'metadata.quality.number_value=2'}}}},
        "best_executor": {"resolver": {"outputArtifactQueries": {"model": {
            "filter": 'schema_title="tfx.Model" AND state=LIVE AND '
                      'name="{{$.inputs.artifacts[\'input\'].metadata[\'name_of\']}}"'}}}},
    }
    return {"displayName": "toy", "runtimeConfig": {"gcsOutputDirectory": root},
            "pipelineSpec": {
                "pipelineInfo": {"name": "toy"},
                "root": {"dag": {"tasks": tasks}, "inputDefinitions": {"parameters": {
                    "model_name": {"parameterType": "STRING", "defaultValue": "m1"}}}},
                "components": components, "deploymentSpec": {"executors": executors}}}


def _write(tmp_path, spec: dict) -> str:
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(spec))
    return str(path)


def _data(done, task: str, key: str) -> dict:
    with open(os.path.join(done.artifact(task, key)["uri"], "data")) as f:
        return json.load(f)


def test_tasks_run_in_dependency_order_with_parameters_artifacts_and_environment(
        tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/leaked/from/the/shell")
    root = tmp_path / "root"
    done = replay(_write(tmp_path, _spec(str(root))), job_id="job1", log=lambda _: None)

    assert list(done.tasks) == ["newest", "prepare", "best", "train", "report"]
    assert done.job_dir == str(root / "job1")
    train = _data(done, "train", "model")
    assert train["params"] == {"q": 2, "name": "m1"}  # constants and the pipeline default
    assert train["legacy"]["q"] == {"intValue": "2"}  # the entry point's parameter form
    prepared = json.loads(train["seen"]["data"][0])
    assert prepared["params"] == {"q": 1, "text": "a b"}
    # The container's environment: the Dockerfile's ENV and the spec's env, nothing of this
    # shell's; a fresh HOME; the task's own folder as the working directory.
    assert train["env"] == {"TF_USE_LEGACY_KERAS": "0", "PYTHONPATH": None,
                            "SPEC_ENV": "from the spec"}
    assert train["home"].startswith(str(root / "job1"))
    assert train["cwd"] == str(root / "job1" / "train")
    # No earlier replay: the resolvers find nothing, and the input list is empty.
    assert done.tasks["newest"].outputs == {"model": []}
    assert _data(done, "report", "report")["seen"]["baseline"] == []
    assert done.artifact("train", "model")["metadata"] == {"quality": 2}
    assert done.artifact("report", "report")["schemaTitle"] == "components.RunReport"


def test_a_second_replay_resolves_what_the_first_produced(tmp_path):
    root = str(tmp_path / "root")
    spec = _spec(root)
    # ``best`` looks the model up by the name the newest one records in its metadata.
    first = replay(_write(tmp_path, spec), job_id="job1", log=lambda _: None)
    trained = first.artifact("train", "model")
    store = json.loads(open(os.path.join(root, replay_module.STORE)).read())
    for artifact in store:
        if artifact["name"] == trained["name"]:
            artifact["metadata"]["name_of"] = trained["name"]
    with open(os.path.join(root, replay_module.STORE), "w") as f:
        json.dump(store, f)

    second = replay(_write(tmp_path, spec), job_id="job2", log=lambda _: None)
    assert second.artifact("newest", "model")["name"] == trained["name"]
    assert second.artifact("best", "model")["uri"] == trained["uri"]
    baseline = json.loads(_data(second, "report", "report")["seen"]["baseline"][0])
    assert baseline["params"]["q"] == 2


def test_a_failed_task_names_itself_and_its_log_and_stops_the_replay(tmp_path):
    spec = _spec(str(tmp_path / "root"), fail_train=True)
    ran = []
    with pytest.raises(ReplayError) as failure:
        replay(_write(tmp_path, spec), job_id="job1", log=ran.append)
    message = str(failure.value)
    assert message.startswith("task train failed: its executor exited with status 3")
    assert "the step failed on purpose" in message
    assert os.path.exists(tmp_path / "root" / "job1" / "train" / "log.txt")
    assert not any(line.startswith("report") for line in ran)
    assert not os.path.exists(tmp_path / "root" / "job1" / "report")


def test_specs_it_cannot_replay_are_refused_with_the_reason(tmp_path, capsys):
    cloud = _spec("gs://bucket/root")
    with pytest.raises(ReplayError, match="gs://bucket/root: the replay writes locally"):
        replay(_write(tmp_path, cloud), log=lambda _: None)

    unknown = _spec(str(tmp_path / "root"))
    unknown["pipelineSpec"]["deploymentSpec"]["executors"]["prepare_executor"]["container"][
        "args"] = ["{{$.inputs.parameters['q']}}"]
    with pytest.raises(ReplayError, match="task prepare: placeholder"):
        replay(_write(tmp_path, unknown), log=lambda _: None)

    (tmp_path / "broken.json").write_text('{"pipelineSpec": {"root": {}}}')
    assert replay_module.main([str(tmp_path / "broken.json")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a compiled pipeline spec" in err
    assert "Traceback" not in err


def test_dockerfile_env_reads_continued_and_single_settings(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text('FROM python:3.10-slim\nENV A=1 \\\n    B="two words" \\\n'
                          '    C=3\nENV D four\nRUN echo ENV=no\n')
    assert dockerfile_env(str(dockerfile)) == {"A": "1", "B": "two words", "C": "3",
                                               "D": "four"}
    # The repository's Dockerfile sets what the suite's entry points need.
    assert dockerfile_env()["TF_USE_LEGACY_KERAS"] == "0"
