"""Runners: the same pipeline on the local machine, its data steps on a Beam engine (local,
multi-processing, a dask.distributed cluster, Dataflow, Flink or Spark), or compiled for
Kubeflow Pipelines / Vertex AI."""

from __future__ import annotations

import os
from dataclasses import dataclass

import suite  # noqa: F401  (Keras policy before TensorFlow; Beam workers inherit it)

RUNNERS = ("local", "beam", "dask", "dataflow", "flink", "spark")
# The suite's own Beam runner on dask.distributed (Beam 2.61's DaskRunner runs no TFX step).
DASK_RUNNER = "pipelines.dask_engine.DaskEngine"
# The workers of local, beam and dask are processes of this machine running this very
# installation: there is nothing to ship to them, and this option says so. Without a worker
# environment in the Beam options, TFX packs its own source into a ~42 MB sdist under TMPDIR
# at every Beam step (dependency_utils.make_beam_dependency_flags), about a second each, and
# never deletes it. Neither the DirectRunner nor DaskEngine reads the option.
SAME_PROCESS_ENVIRONMENT = "--sdk_container_image=this-installation"


@dataclass(frozen=True)
class EngineOptions:
    """What a distributed Beam engine needs (``--beam-*`` options of run, compile, submit)."""

    project: str = ""  # dataflow
    region: str = ""  # dataflow
    temp_location: str = ""  # dataflow: gs://... staging and temp files
    worker_image: str = ""  # dataflow: sdk_container_image; flink/spark: the DOCKER image
    job_endpoint: str = ""  # flink/spark: the portable job server, HOST:PORT
    environment_type: str = "DOCKER"  # flink/spark: DOCKER, PROCESS, EXTERNAL or LOOPBACK
    dask_address: str = ""  # dask: a running scheduler, HOST:PORT; "": a local cluster
    extra: tuple[str, ...] = ()  # --beam-arg: passed through last, as given


def _require(runner: str, options: EngineOptions, *names: str) -> None:
    for name in names:
        if not getattr(options, name):
            flag = "--beam-" + name.replace("_", "-")
            raise ValueError(f"--runner {runner} needs {flag}")


def beam_args(runner: str, workers: int = 0,
              options: EngineOptions = EngineOptions()) -> list[str]:
    """The Beam options every Beam-based component (ExampleGen, StatisticsGen, Transform,
    Evaluator) gets: in-process by default (fastest on small data and few cores);
    multi-processing workers with ``beam``; a dask.distributed cluster with ``dask`` (the
    scheduler at ``options.dask_address``, or a local cluster of ``workers`` processes the
    run starts); Dataflow; or a Flink or Spark cluster through its portable job server.
    ``workers`` (``beam`` and a local ``dask`` cluster) defaults to one per CPU.
    ``options.extra`` is appended as given."""
    if runner == "local":
        args = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
    elif runner == "beam":
        args = ["--direct_running_mode=multi_processing",
                f"--direct_num_workers={workers or os.cpu_count() or 1}"]
    elif runner == "dask":
        args = [f"--runner={DASK_RUNNER}"]
        if options.dask_address:
            args.append(f"--dask_client_address={options.dask_address}")
        else:
            args.append(f"--dask_local_workers={workers or os.cpu_count() or 1}")
    elif runner == "dataflow":
        _require(runner, options, "project", "region", "temp_location")
        args = ["--runner=DataflowRunner", f"--project={options.project}",
                f"--region={options.region}", f"--temp_location={options.temp_location}"]
        if options.worker_image:
            args.append(f"--sdk_container_image={options.worker_image}")
    elif runner in ("flink", "spark"):
        _require(runner, options, "job_endpoint")
        args = ["--runner=PortableRunner", f"--job_endpoint={options.job_endpoint}",
                f"--environment_type={options.environment_type}"]
        if options.worker_image and options.environment_type == "DOCKER":
            args.append(f"--environment_config={options.worker_image}")
    else:
        raise ValueError(f"runner: expected one of {RUNNERS}, got {runner!r}")
    if runner in ("local", "beam", "dask"):
        args.append(SAME_PROCESS_ENVIRONMENT)
    return args + list(options.extra)


def run_local(pipeline) -> None:
    """Runs the pipeline with LocalDagRunner (SQLite MLMD from the pipeline's config)."""
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    if f"--runner={DASK_RUNNER}" in (pipeline.beam_pipeline_args or ()):
        import pipelines.dask_engine  # noqa: F401  (its --dask_* options, known to Beam)
    LocalDagRunner().run(pipeline)


def compile_kubeflow_v2(pipeline, image: str, output_path: str) -> str:
    """Writes the Kubeflow Pipelines / Vertex AI pipeline spec (JSON) for ``pipeline``."""
    try:
        from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as kfp_v2
    except ImportError as e:  # kfp-pipeline-spec is part of the locked stack
        raise RuntimeError(f"Kubeflow V2 compile needs kfp-pipeline-spec: {e}") from e

    output_dir = os.path.dirname(os.path.abspath(output_path))
    os.makedirs(output_dir, exist_ok=True)
    runner = kfp_v2.KubeflowV2DagRunner(
        config=kfp_v2.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=output_dir, output_filename=os.path.basename(output_path))
    runner.run(pipeline, write_out=True)
    return output_path
