"""A local replay of a compiled Kubeflow Pipelines V2 / Vertex AI pipeline spec.

It does what the cluster's launcher does, with local files for the storage and a subprocess
for the container: it walks the spec's tasks in dependency order; for each task it builds
the executor input from the spec (parameters, input artifacts from upstream tasks' outputs,
output URIs and the executor output file under the job's folder in the pipeline root), runs
the container's own command and arguments (the TFX Kubeflow V2 entry point, and first the
``preCacheCheck`` driver where the spec has one) with the environment the Dockerfile sets,
and reads the artifacts the task wrote from its executor output. Resolver tasks answer their
artifact queries from the artifacts earlier replays under the same root produced (the role
Vertex ML Metadata plays), so a second replay compares against the model the first one
blessed. Everything comes from the spec: nothing here knows an app or a component.

Not replayed: the execution cache (every task runs), and conditions (a spec with
``triggerPolicy`` conditions is refused).

``python -m pipelines.replay SPEC.json`` replays a spec compiled with a local
``--pipeline-root``; it prints each task's state and time and exits 1 when one fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from suite.files import is_local, write_atomic

# Where the replay keeps the artifacts it produced (the launcher's metadata store).
STORE = "replay_artifacts.json"
EXECUTOR_OUTPUT = "executor_output.json"
_DOCKERFILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "Dockerfile")
_ARTIFACT = "projects/local/locations/local/metadataStores/default/artifacts/{}"


class ReplayError(RuntimeError):
    """A spec the replay cannot run, or a task that failed; the message names the task."""


@dataclass
class TaskResult:
    """One task the replay ran: its seconds, its output artifacts by key (name, uri and
    metadata as its executor output gave them, and schemaTitle), its output parameters, and
    its log file."""

    name: str
    seconds: float = 0.0
    outputs: dict[str, list[dict]] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    log: str = ""


@dataclass
class Replay:
    """A finished replay: the job's folder and its tasks in the order they ran."""

    job_dir: str
    tasks: dict[str, TaskResult]

    def artifact(self, task: str, key: str) -> dict | None:
        """The first artifact ``task`` wrote under ``key`` (None when it wrote none)."""
        found = self.tasks[task].outputs.get(key) or []
        return found[0] if found else None


def dockerfile_env(path: str = _DOCKERFILE) -> dict[str, str]:
    """The ``ENV`` settings of a Dockerfile (``ENV K=V [K=V ...]`` and ``ENV K V``)."""
    env: dict[str, str] = {}
    if not os.path.exists(path):
        return env
    with open(path) as f:
        text = re.sub(r"\\\n", " ", f.read())
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if not words or words[0].upper() != "ENV":
            continue
        if len(words) == 3 and "=" not in words[1]:
            env[words[1]] = words[2]
        else:
            env.update(word.split("=", 1) for word in words[1:] if "=" in word)
    return env


def container_env(home: str) -> dict[str, str]:
    """A container's environment before its spec's own ``env``: the Dockerfile's ``ENV``,
    ``python`` on ``PATH`` being the interpreter that has the suite installed (the image's),
    and a fresh ``HOME``. Nothing else of this shell leaks in."""
    env = {"PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin",
                                    "/usr/bin", "/bin"]),
           "HOME": home, "LANG": "C.UTF-8"}
    env.update(dockerfile_env())
    return env


# -- reading the spec ------------------------------------------------------------------------


def _order(tasks: dict[str, dict]) -> list[str]:
    """Task names in dependency order (upstream first; ties by name)."""
    needs = {name: set(task.get("dependentTasks", [])) for name, task in tasks.items()}
    for name, task in tasks.items():
        inputs = task.get("inputs", {})
        for spec in list(inputs.get("artifacts", {}).values()) + \
                list(inputs.get("parameters", {}).values()):
            for kind in ("taskOutputArtifact", "taskOutputParameter"):
                if kind in spec:
                    needs[name].add(spec[kind]["producerTask"])
    order: list[str] = []
    while needs:
        ready = sorted(name for name, upstream in needs.items() if not upstream - set(order))
        if not ready:
            raise ReplayError(f"the spec's tasks depend on each other in a cycle: "
                              f"{sorted(needs)}")
        order += ready
        for name in ready:
            del needs[name]
    return order


def _value(constant: dict) -> Any:
    """A plain value from a pipeline-spec ``Value`` (stringValue / intValue / doubleValue)."""
    if "stringValue" in constant:
        return constant["stringValue"]
    if "intValue" in constant:
        return int(constant["intValue"])
    if "doubleValue" in constant:
        return float(constant["doubleValue"])
    raise ReplayError(f"unsupported constant {constant}")


def _legacy(value: Any) -> dict:
    """A pipeline-spec ``Value`` from a plain value."""
    if isinstance(value, bool) or isinstance(value, int):
        return {"intValue": str(int(value))}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": value if isinstance(value, str) else json.dumps(value)}


class _Store:
    """The artifacts replays under one pipeline root produced, newest last (a JSON file)."""

    def __init__(self, path: str):
        self.path = path
        self.artifacts: list[dict] = []
        if os.path.exists(path):
            with open(path) as f:
                self.artifacts = json.load(f)

    def add(self, artifact: dict) -> dict:
        """Records ``artifact`` (with its ``schemaTitle``) as LIVE; returns the record."""
        record = {**artifact, "state": "LIVE", "createTime": time.time()}
        self.artifacts.append(record)
        write_atomic(self.path, json.dumps(self.artifacts, indent=1))
        return record

    def query(self, text: str) -> list[dict]:
        """The artifacts a resolver filter matches, newest first. The filters TFX compiles
        are conjunctions (``AND``) of ``schema_title="T"``, ``state=LIVE``, ``name="N"``
        and ``metadata.KEY.number_value=X`` / ``.string_value="S"``."""
        tests = []
        for term in re.split(r"\s+AND\s+", text.strip()):
            match = re.fullmatch(r'([\w.]+)\s*=\s*("(?:[^"\\]|\\.)*"|[\w.+-]+)', term.strip())
            if not match:
                raise ReplayError(f"resolver filter term {term!r}: expected FIELD=VALUE")
            key, raw = match.groups()
            value: Any = json.loads(raw) if raw.startswith('"') else raw
            tests.append((key, value))

        def get(artifact: dict, key: str) -> Any:
            if key == "schema_title":
                return artifact["schemaTitle"]
            if key in ("state", "name"):
                return artifact.get(key)
            parts = key.split(".")
            if len(parts) == 3 and parts[0] == "metadata":
                return artifact.get("metadata", {}).get(parts[1])
            raise ReplayError(f"resolver filter field {key!r} is not supported")

        def matches(artifact: dict) -> bool:
            for key, value in tests:
                got = get(artifact, key)
                if key.endswith(".number_value"):
                    if got is None or float(got) != float(value):
                        return False
                elif got != value:
                    return False
            return True

        return [a for a in reversed(self.artifacts) if matches(a)]


def _runtime(artifact: dict) -> dict:
    """The RuntimeArtifact fields of a recorded artifact (name, uri, metadata)."""
    return {k: artifact[k] for k in ("name", "uri", "metadata") if k in artifact}


def _title(artifact_type: dict) -> str:
    """An artifact type's schema title (``schemaTitle`` or the ``instanceSchema``'s)."""
    if "schemaTitle" in artifact_type:
        return artifact_type["schemaTitle"]
    match = re.search(r"^title:\s*(\S+)", artifact_type.get("instanceSchema", ""), re.M)
    if not match:
        raise ReplayError(f"artifact type without a title: {artifact_type}")
    return match.group(1)


# -- running ---------------------------------------------------------------------------------


class _Run:
    """One replay of a job: the spec, its runtime config, the store, the tasks run so far."""

    def __init__(self, job: dict, job_id: str):
        self.spec = job["pipelineSpec"]
        runtime = job.get("runtimeConfig", {})
        self.root = runtime.get("gcsOutputDirectory", "")
        if not self.root or not is_local(self.root):
            raise ReplayError(f"pipeline root {self.root or '(none)'}: the replay writes "
                              f"locally; compile with a local --pipeline-root")
        self.params = {k: _value(v) for k, v in runtime.get("parameters", {}).items()}
        self.params.update(runtime.get("parameterValues", {}))
        self.job_id = job_id
        self.job_dir = os.path.join(self.root, job_id)
        self.store = _Store(os.path.join(self.root, STORE))
        self.results: dict[str, TaskResult] = {}
        self.env = container_env(os.path.join(self.job_dir, ".home"))

    def parameter(self, task: str, key: str, spec: dict) -> Any:
        if "runtimeValue" in spec:
            runtime = spec["runtimeValue"]
            return runtime["constant"] if "constant" in runtime else \
                _value(runtime["constantValue"])
        if "componentInputParameter" in spec:
            name = spec["componentInputParameter"]
            if name in self.params:
                return self.params[name]
            default = self.spec["root"].get("inputDefinitions", {}).get("parameters", {}) \
                .get(name, {}).get("defaultValue")
            if default is None:
                raise ReplayError(f"task {task}: pipeline parameter {name!r} has no value")
            return default
        if "taskOutputParameter" in spec:
            out = spec["taskOutputParameter"]
            return self.results[out["producerTask"]].parameters[out["outputParameterKey"]]
        raise ReplayError(f"task {task}: parameter {key!r}: unsupported source {spec}")

    def input_artifacts(self, task: str, spec: dict, definitions: dict) -> dict:
        artifacts = {}
        for key, source in spec.get("inputs", {}).get("artifacts", {}).items():
            if "taskOutputArtifact" not in source:
                raise ReplayError(f"task {task}: input {key!r}: unsupported source {source}")
            out = source["taskOutputArtifact"]
            produced = self.results[out["producerTask"]].outputs.get(out["outputArtifactKey"], [])
            kind = definitions.get(key, {}).get("artifactType", {})
            artifacts[key] = {"artifacts": [{**_runtime(a), "type": kind} for a in produced]}
        return artifacts

    def run_task(self, name: str, task: dict) -> TaskResult:
        if task.get("triggerPolicy", {}).get("condition"):
            raise ReplayError(f"task {name}: conditions are not replayed")
        component = self.spec["components"][task["componentRef"]["name"]]
        executor = self.spec["deploymentSpec"]["executors"][component["executorLabel"]]
        result = TaskResult(name)
        self.results[name] = result
        inputs = component.get("inputDefinitions", {})
        artifacts = self.input_artifacts(name, task, inputs.get("artifacts", {}))
        start = time.time()
        if "resolver" in executor:
            self.resolve(executor["resolver"], artifacts, result)
        elif "container" in executor:
            params = {key: self.parameter(name, key, spec) for key, spec in
                      task.get("inputs", {}).get("parameters", {}).items()}
            self.execute(name, executor["container"], params, artifacts, component, result)
        else:
            raise ReplayError(f"task {name}: executor kind {sorted(executor)} is not replayed")
        result.seconds = time.time() - start
        return result

    def resolve(self, resolver: dict, inputs: dict, result: TaskResult) -> None:
        """Answers the resolver's artifact queries from the store (newest match)."""
        def placeholder(match: re.Match) -> str:
            key, field_name = match.groups()
            found = inputs.get(key, {}).get("artifacts", [])
            if not found:
                raise LookupError
            return str(found[0].get("metadata", {}).get(field_name, ""))

        for key, query in resolver.get("outputArtifactQueries", {}).items():
            try:
                text = re.sub(r"\{\{\$\.inputs\.artifacts\['(\w+)'\]\.metadata\['(\w+)'\]\}\}",
                              placeholder, query["filter"])
            except LookupError:  # the upstream query found nothing
                result.outputs[key] = []
                continue
            result.outputs[key] = self.store.query(text)[:1]

    def execute(self, name: str, container: dict, params: dict, artifacts: dict,
                component: dict, result: TaskResult) -> None:
        task_dir = os.path.join(self.job_dir, name)
        os.makedirs(task_dir, exist_ok=True)
        declared = {key: ({"name": _ARTIFACT.format(f"{self.job_id}.{name}.{key}"),
                           "uri": os.path.join(task_dir, key), "metadata": {}},
                          definition["artifactType"])
                    for key, definition in component.get("outputDefinitions", {})
                    .get("artifacts", {}).items()}
        output_file = os.path.join(task_dir, EXECUTOR_OUTPUT)
        invocation = {
            "inputs": {"parameterValues": params,
                       "parameters": {k: _legacy(v) for k, v in params.items()},
                       "artifacts": artifacts},
            "outputs": {"artifacts": {key: {"artifacts": [{**artifact, "type": kind}]}
                                      for key, (artifact, kind) in declared.items()},
                        "outputFile": output_file}}
        env = {**self.env, **{e["name"]: e["value"] for e in container.get("env", [])}}
        os.makedirs(env["HOME"], exist_ok=True)
        result.log = os.path.join(task_dir, "log.txt")
        steps = [("preCacheCheck", container.get("lifecycle", {}).get("preCacheCheck")),
                 ("executor", container)]
        for step, command in steps:
            if not command:
                continue
            argv = [_substitute(a, invocation, name) for a in
                    command.get("command", []) + command.get("args", [])]
            if not argv:
                raise ReplayError(f"task {name}: the {step} has no command")
            with open(result.log, "a") as log:
                log.write(f"$ {shlex.join(argv[:3])} ...\n")
                log.flush()
                code = subprocess.call(argv, cwd=task_dir, env=env, stdout=log,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            if code != 0:
                raise ReplayError(f"task {name} failed: its {step} exited with status {code}; "
                                  f"log: {result.log}\n{_tail(result.log)}")
        if not os.path.exists(output_file):
            raise ReplayError(f"task {name} wrote no executor output {output_file}")
        with open(output_file) as f:
            written = json.load(f)
        result.parameters = written.get("parameterValues", {})
        for key, (artifact, kind) in declared.items():
            got = written.get("artifacts", {}).get(key, {}).get("artifacts", [])
            record = {**artifact, "schemaTitle": _title(kind)}
            if got:
                record.update({k: got[0][k] for k in ("uri", "metadata") if k in got[0]})
            result.outputs[key] = [self.store.add(record)]


def _substitute(arg: str, invocation: dict, task: str) -> str:
    """A container argument with its placeholder filled: ``{{$}}`` is the executor input."""
    if "{{$}}" in arg:
        arg = arg.replace("{{$}}", json.dumps(invocation))
    if "{{$" in arg:
        raise ReplayError(f"task {task}: placeholder in {arg[:80]!r} is not replayed")
    return arg


def _tail(path: str, lines: int = 15) -> str:
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-lines:])


def _load(path: str) -> dict:
    """The compiled PipelineJob at ``path``, checked for what the replay reads."""
    try:
        with open(path) as f:
            job = json.load(f)
    except json.JSONDecodeError as e:
        raise ReplayError(f"{path}: not JSON ({e})") from None
    if not isinstance(job, dict):
        raise ReplayError(f"{path}: expected a compiled pipeline job (a JSON object)")
    job.setdefault("pipelineSpec", {k: v for k, v in job.items() if k != "runtimeConfig"})
    spec = job["pipelineSpec"]
    for keys in (("pipelineInfo", "name"), ("root", "dag", "tasks"), ("components",),
                 ("deploymentSpec", "executors")):
        node = spec
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                raise ReplayError(f"{path}: not a compiled pipeline spec: no "
                                  f"pipelineSpec.{'.'.join(keys)}")
            node = node[key]
    return job


def replay(spec_path: str, *, job_id: str | None = None, log=print) -> Replay:
    """Runs the compiled spec at ``spec_path`` task by task; returns what each task did.
    Raises ``ReplayError`` (naming the task, with its log's tail) at the first failure."""
    job = _load(spec_path)
    spec = job["pipelineSpec"]
    job_id = job_id or f"{spec['pipelineInfo']['name']}-{time.strftime('%Y%m%d%H%M%S')}"
    run = _Run(job, job_id)
    tasks = spec["root"]["dag"]["tasks"]
    outcome = Replay(run.job_dir, run.results)
    for name in _order(tasks):
        result = run.run_task(name, tasks[name])
        log(f"{name}: done in {result.seconds:.0f} s")
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.replay",
        description="Replay a compiled Kubeflow V2 / Vertex AI spec locally, task by task, "
                    "in subprocesses with the container's command and environment.")
    parser.add_argument("spec", help="the spec `<app> compile --pipeline-root DIR` wrote")
    parser.add_argument("--job-id", help="the job's folder under the pipeline root")
    args = parser.parse_args(argv)
    try:
        done = replay(args.spec, job_id=args.job_id)
    except (ReplayError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"replayed {len(done.tasks)} tasks; outputs under {done.job_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
