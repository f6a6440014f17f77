"""The ``dask`` engine: its options, Beam's semantics on a local dask.distributed cluster of
two worker processes, the in-process fallback for what it cannot run, and the pipeline's
data steps (ExampleGen, StatisticsGen, SchemaGen, ExampleValidator, Transform) on it, checked
against the generated data."""

from __future__ import annotations

import argparse
import collections
import glob
import os

import pytest

import suite  # noqa: F401
from apps.base import cli
from pipelines.runners import DASK_RUNNER, SAME_PROCESS_ENVIRONMENT, beam_args

WORKERS = 2


def test_the_dask_options_of_the_command_line():
    parser = argparse.ArgumentParser()
    cli.add_engine_arguments(parser)
    args = parser.parse_args(["--runner", "dask", "--beam-workers", "3"])
    assert cli.engine_args(args) == [f"--runner={DASK_RUNNER}", "--dask_local_workers=3",
                                     SAME_PROCESS_ENVIRONMENT]
    args = parser.parse_args(["--runner", "dask", "--beam-dask-address", "sched:8786",
                              "--beam-arg=--dask_partitions=8"])
    assert cli.engine_args(args) == [f"--runner={DASK_RUNNER}",
                                     "--dask_client_address=sched:8786",
                                     SAME_PROCESS_ENVIRONMENT, "--dask_partitions=8"]


def _warm() -> None:  # the workers import TensorFlow and Beam while the test prepares data
    import pipelines.dask_engine  # noqa: F401
    import tensorflow_transform  # noqa: F401
    import tfx_bsl.public.tfxio  # noqa: F401


@pytest.fixture(scope="module")
def engine():
    """The engine's local cluster of two worker processes, shared by this module's tests."""
    from pipelines import dask_engine

    client = dask_engine.client_for(None, WORKERS)
    warming = [client.submit(_warm, workers=[w], pure=False) for w in client.nthreads()]
    yield dask_engine
    del warming
    dask_engine.shutdown()


def _options():
    from apache_beam.options.pipeline_options import PipelineOptions

    return PipelineOptions(beam_args("dask", WORKERS))


def _lines(pattern: str) -> list[str]:
    return sorted(line for path in glob.glob(pattern) for line in open(path).read().split("\n")
                  if line)


def test_beam_semantics_on_the_cluster(engine, tmp_path):
    import apache_beam as beam

    out = str(tmp_path / "out")
    with beam.Pipeline(options=_options()) as p:
        lines = p | beam.Create(["a b", "b c", "c c", "d"] * 5)
        words = lines | beam.FlatMap(str.split)
        counts = words | beam.combiners.Count.PerElement()  # a lifted CombinePerKey
        total = words | beam.combiners.Count.Globally()
        low, high = counts | beam.Partition(lambda kv, n: int(kv[1] >= 10), 2)
        by_count = (counts | beam.Map(lambda kv: (kv[1], kv[0])) | beam.GroupByKey()
                    | beam.MapTuple(lambda n, ws: f"{n}:{''.join(sorted(ws))}"))
        shares = high | beam.Map(lambda kv, t: f"{kv[0]}={kv[1] / t:.2f}",
                                 t=beam.pvalue.AsSingleton(total))
        _ = (low | beam.MapTuple(lambda w, n: f"low {w}") | beam.Reshuffle()
             | "low" >> beam.io.WriteToText(out + "-low"))
        _ = by_count | "groups" >> beam.io.WriteToText(out + "-groups")
        _ = shares | "shares" >> beam.io.WriteToText(out + "-shares")
    assert engine.RUNS[-1].engine == "dask", engine.RUNS[-1].reason
    assert _lines(out + "-low*") == ["low a", "low d"]
    assert _lines(out + "-groups*") == ["10:b", "15:c", "5:ad"]
    assert _lines(out + "-shares*") == ["b=0.29", "c=0.43"]  # 10 and 15 of 35 words

    with beam.Pipeline(options=_options()) as p:  # reading files back, in source bundles
        _ = (p | beam.io.ReadFromText(out + "-groups*") | beam.combiners.Count.Globally()
             | beam.Map(str) | beam.io.WriteToText(out + "-read"))
    assert engine.RUNS[-1].engine == "dask"
    assert _lines(out + "-read*") == ["3"]


def test_what_the_cluster_cannot_run_runs_in_process_and_says_so(engine, tmp_path, capsys):
    import apache_beam as beam
    from apache_beam.transforms import userstate

    class Numbered(beam.DoFn):  # per-key state: not run on the cluster
        SEEN = userstate.CombiningValueStateSpec("seen", sum)

        def process(self, kv, seen=beam.DoFn.StateParam(SEEN)):
            seen.add(1)
            yield f"{kv[0]}{seen.read()}"

    out = str(tmp_path / "state")
    with beam.Pipeline(options=_options()) as p:
        _ = (p | beam.Create([("a", 1), ("a", 2), ("b", 3)]) | beam.ParDo(Numbered())
             | beam.io.WriteToText(out))
    run = engine.RUNS[-1]
    assert run.engine == "in-process" and "stateful" in run.reason
    assert "runs in process: the Dask engine cannot run a stateful" in capsys.readouterr().out
    assert _lines(out + "*") == ["a1", "a2", "b1"]


def _write_examples(folder, items_of_split: dict[str, list[tuple[list[str], str]]]) -> None:
    import tensorflow as tf

    from apps.clickstreams.features import HISTORY, NEXT_ITEM, SESSION, TIMESTAMP

    def feature(values):
        if isinstance(values[0], int):
            return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()
                                                                     for v in values]))

    for split, rows in items_of_split.items():
        os.makedirs(folder / split)
        halves = {"train": 2, "eval": 1}[split]  # two files: two source bundles to read
        for part in range(halves):
            with tf.io.TFRecordWriter(str(folder / split / f"data-{part}.tfrecord")) as w:
                for i, (history, next_item) in enumerate(rows[part::halves]):
                    w.write(tf.train.Example(features=tf.train.Features(feature={
                        HISTORY: feature(history), NEXT_ITEM: feature([next_item]),
                        SESSION: feature([f"s{i % 7}"]),
                        TIMESTAMP: feature([1_300_000_000 + i])})).SerializeToString())


def _records(pattern: str) -> list[bytes]:
    import tensorflow as tf

    files = sorted(glob.glob(pattern))
    return sorted(r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP"))


@pytest.mark.pipeline
def test_the_data_steps_run_on_the_cluster(engine, tmp_path):
    import numpy as np
    import tensorflow_transform as tft
    from tensorflow_metadata.proto.v0 import statistics_pb2

    from apps.base.cli import pipeline_paths
    from apps.clickstreams.app import APP
    from apps.clickstreams.config import ClickstreamConfig
    from apps.clickstreams.features import NEXT_ITEM, VOCABULARY
    from pipelines.builder import create_pipeline
    from pipelines.results import component_wall_times
    from pipelines.runners import run_local

    rng = np.random.default_rng(0)
    items = [f"item{k:02d}" for k in range(12)]
    weights = np.arange(12, 0, -1) / np.arange(12, 0, -1).sum()
    rows = {split: [([str(x) for x in rng.choice(items, size=rng.integers(1, 6))],
                     str(rng.choice(items, p=weights))) for _ in range(n)]
            for split, n in (("train", 240), ("eval", 80))}
    examples = tmp_path / "examples"
    _write_examples(examples, rows)

    config = ClickstreamConfig.preset("tiny")
    spec = APP.spec(config)
    paths = pipeline_paths(str(tmp_path / "ws"), APP.name, str(examples))
    os.makedirs(os.path.dirname(paths.metadata_path))
    first_run = len(engine.RUNS)
    run_local(create_pipeline(spec, config, paths, beam_pipeline_args=beam_args("dask", WORKERS),
                              enable_cache=False, data_only=True))
    runs = engine.RUNS[first_run:]
    assert [r.engine for r in runs] == ["dask"] * 3, [r.reason for r in runs]
    assert list(component_wall_times(paths.metadata_path, spec.name)) == [
        "ImportExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform"]

    root = paths.pipeline_root
    for split in ("train", "eval"):  # ExampleGen: the same records, each once
        written = _records(f"{root}/ImportExampleGen/examples/*/Split-{split}/*")
        assert written == sorted(_records_plain(examples / split)), split

    stats_file = glob.glob(f"{root}/StatisticsGen/statistics/*/Split-train/FeatureStats.pb")[0]
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    stats.ParseFromString(open(stats_file, "rb").read())
    (dataset,) = stats.datasets
    assert dataset.num_examples == 240
    by_name = {f.path.step[0]: f for f in dataset.features}
    assert by_name[NEXT_ITEM].string_stats.unique == len({n for _, n in rows["train"]})
    history_lengths = [len(h) for h, _ in rows["train"]]
    assert by_name["history"].string_stats.common_stats.avg_num_values == pytest.approx(
        np.mean(history_lengths), rel=1e-6)
    assert glob.glob(f"{root}/ExampleValidator/anomalies/*/Split-eval/SchemaDiff.pb")

    # Transform: the next-item vocabulary of the train split, most frequent first.
    output = tft.TFTransformOutput(glob.glob(f"{root}/Transform/transform_graph/*")[0])
    counts = collections.Counter(n for _, n in rows["train"])
    vocabulary = output.vocabulary_by_name(VOCABULARY)
    assert [v.decode() for v in vocabulary] == sorted(counts, key=lambda w: (counts[w], w),
                                                      reverse=True)


def _records_plain(folder) -> list[bytes]:
    import tensorflow as tf

    return [r.numpy() for r in tf.data.TFRecordDataset(sorted(map(str, folder.glob("*"))))]
