"""What a pipeline run did, read back from ML Metadata: component states, blessing, push,
edge models and evaluation metrics."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RunSummary:
    """The latest run of a pipeline as MLMD recorded it."""

    run_id: str
    states: dict[str, str]  # component id -> COMPLETE / CACHED / FAILED / ...
    blessed: bool | None = None
    pushed: bool | None = None
    pushed_destination: str | None = None
    pushed_version: str | None = None
    edge_dir: str | None = None
    evaluation_uri: str | None = None
    model_uri: str | None = None
    examples_uri: str | None = None  # ExampleGen's output (the raw examples)
    transform_graph_uri: str | None = None
    # The Model artifact's training energy properties (components.trainer_executor).
    training_energy: dict = field(default_factory=dict)
    report_path: str | None = None  # the run report (components.run_report)
    pushed_report: str | None = None  # its copy in the pushed version, beside the model card
    extra: dict = field(default_factory=dict)


def _store(metadata_path: str):
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def latest_run(metadata_path: str, pipeline_name: str) -> RunSummary:
    """Summarises the newest run of ``pipeline_name`` in the SQLite MLMD store."""
    from ml_metadata.proto import metadata_store_pb2

    from components.run_report import RunReport
    from components.tflite_export import EdgeModels

    store = _store(metadata_path)
    runs = store.get_contexts_by_type("pipeline_run")
    pipeline_ctx = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline_ctx is None or not runs:
        raise LookupError(f"{metadata_path}: no run of pipeline {pipeline_name!r} recorded")
    pipeline_executions = {e.id for e in store.get_executions_by_context(pipeline_ctx.id)}
    runs = [r for r in runs
            if {e.id for e in store.get_executions_by_context(r.id)} & pipeline_executions]
    run = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    run_executions = {e.id: e for e in store.get_executions_by_context(run.id)}

    state_name = metadata_store_pb2.Execution.State.Name
    states: dict[str, str] = {}
    node_of: dict[int, str] = {}
    prefix = f"{pipeline_name}."
    for node in store.get_contexts_by_type("node"):
        if not node.name.startswith(prefix):
            continue
        node_id = node.name[len(prefix):]
        for execution in store.get_executions_by_context(node.id):
            if execution.id in run_executions:
                states[node_id] = state_name(execution.last_known_state)
                node_of[execution.id] = node_id

    summary = RunSummary(run_id=run.name, states=states)
    events = store.get_events_by_execution_ids(list(run_executions))
    producer = {e.artifact_id: node_of.get(e.execution_id, "") for e in events
                if e.type in (metadata_store_pb2.Event.OUTPUT,
                              metadata_store_pb2.Event.DECLARED_OUTPUT)}
    outputs = list(producer)
    types = {t.id: t.name for t in store.get_artifact_types()}
    for artifact in store.get_artifacts_by_id(outputs):
        kind = types.get(artifact.type_id)
        props = artifact.custom_properties
        if kind == "ModelBlessing":
            summary.blessed = bool(props["blessed"].int_value) if "blessed" in props else False
        elif kind == "PushedModel":
            summary.pushed = bool(props["pushed"].int_value) if "pushed" in props else False
            if summary.pushed:
                summary.pushed_destination = props["pushed_destination"].string_value
                summary.pushed_version = props["pushed_version"].string_value
        elif kind == EdgeModels.TYPE_NAME and "edge_dir" in props:
            summary.edge_dir = props["edge_dir"].string_value
        elif kind == RunReport.TYPE_NAME and "report_path" in props:
            summary.report_path = props["report_path"].string_value
            if "pushed_report" in props:
                summary.pushed_report = props["pushed_report"].string_value
        elif kind == "Examples" and producer.get(artifact.id, "").endswith("ExampleGen"):
            summary.examples_uri = artifact.uri
        elif kind == "TransformGraph":
            summary.transform_graph_uri = artifact.uri
        elif kind == "ModelEvaluation":
            summary.evaluation_uri = artifact.uri
        elif kind == "Model":
            summary.model_uri = artifact.uri
            summary.training_energy = {
                name: (value.string_value if value.HasField("string_value")
                       else value.double_value)
                for name, value in props.items() if name.startswith("training_")}
    return summary


def component_wall_times(metadata_path: str, pipeline_name: str) -> dict[str, float]:
    """Seconds each component of the newest run of ``pipeline_name`` took, in start order.

    A component's time is its execution's span in MLMD (registered -> last update), so a
    cached component shows the few milliseconds its cache lookup took.
    """
    summary = latest_run(metadata_path, pipeline_name)
    store = _store(metadata_path)
    run = store.get_context_by_type_and_name("pipeline_run", summary.run_id)
    run_executions = {e.id for e in store.get_executions_by_context(run.id)}
    spans: dict[str, tuple[int, int]] = {}
    prefix = f"{pipeline_name}."
    for node in store.get_contexts_by_type("node"):
        if not node.name.startswith(prefix):
            continue
        for execution in store.get_executions_by_context(node.id):
            if execution.id in run_executions:
                spans[node.name[len(prefix):]] = (execution.create_time_since_epoch,
                                                  execution.last_update_time_since_epoch)
    return {node_id: (end - start) / 1000.0
            for node_id, (start, end) in sorted(spans.items(), key=lambda item: item[1])}
