"""How training spreads over devices and workers: the ``tf.distribute`` strategy, the mixed
precision policy, XLA, and the batch size and learning rate for the number of replicas,
all from the ``train`` part of an app's config (``suite.config.TrainBase``). Trainers ask
for one ``Plan`` and change nothing else:

    plan = distribute.plan(config.train)
    ...  # input batches of plan.batch_size, an optimizer at plan.learning_rate
    with plan.scope():  # the strategy, and the dtype policy the layers are built with
        model = build_model(config)
        plan.compile(model, optimizer=..., loss=...)  # XLA as configured, float32 outputs

``train.distribute`` picks the strategy (``strategy``): "auto" (the default) takes a TPU
when one is configured (TPU_NAME), ``MultiWorkerMirroredStrategy`` when TF_CONFIG names a
cluster of more than one task, ``MirroredStrategy`` over the local GPUs when there are
several, else the default strategy (one GPU or the CPU); "default", "mirrored",
"multi_worker" and "tpu" force one. ``train.mixed_precision`` is "off" (float32), "auto"
(mixed_float16 on GPUs, mixed_bfloat16 on a TPU, off on the CPU) or a Keras policy name;
``train.jit_compile`` is null (Keras decides: XLA on a GPU when the model supports it, never
on the CPU or under a strategy), true or false. With ``train.scale_batch_with_replicas`` the
configured batch size is per replica (the global batch is that times the replicas), with
``train.scale_lr_with_replicas`` the learning rate grows linearly with the replicas; both are
off by default, so one device trains exactly as configured.

With several replicas the plan also keeps them identical: training batches are full ones
of a known number (``Plan.full_batches``), workers split each batch rather than the files
(``Plan.sharded``), BatchNormalization uses the global batch's statistics, and two Keras 3
bugs that stop any ``fit`` under MultiWorkerMirroredStrategy are worked around
(``_keras_fixes``). Under MultiWorkerMirroredStrategy every worker runs the same training;
the chief writes the model (``is_chief``, ``task_output_dir``), and the strategy must exist
before TensorFlow runs an op, so a trainer asks for its plan first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

import suite  # noqa: F401  (Keras policy before TensorFlow)
import keras
import tensorflow as tf

from suite.config import TrainBase

KINDS = TrainBase.DISTRIBUTE
PRECISIONS = TrainBase.MIXED_PRECISION

# What a train config that does not extend TrainBase gets (the TrainBase defaults).
DEFAULTS = {name: getattr(TrainBase, name) for name in (
    "distribute", "mixed_precision", "jit_compile", "scale_batch_with_replicas",
    "scale_lr_with_replicas")}

_STRATEGIES: dict[str, tf.distribute.Strategy] = {}


def check_fields(distribute: str, mixed_precision: str) -> None:
    """Raises naming the field when ``train.distribute`` or ``train.mixed_precision`` is
    not one of the known values."""
    if distribute not in KINDS:
        raise ValueError(f"train.distribute: expected one of {list(KINDS)}, got "
                         f"{distribute!r}")
    if mixed_precision not in PRECISIONS:
        raise ValueError(f"train.mixed_precision: expected one of {list(PRECISIONS)}, got "
                         f"{mixed_precision!r}")


def cluster() -> dict[str, Any]:
    """The TF_CONFIG of this process (``{}`` without one); raises naming the variable when
    it is not JSON."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG: expected JSON, got {text[:80]!r} ({e})") from None
    return value if isinstance(value, dict) else {}


def cluster_tasks() -> int:
    """Tasks (chief and workers) of the cluster TF_CONFIG names; 0 without one."""
    spec = cluster().get("cluster") or {}
    return sum(len(spec.get(job, ())) for job in ("chief", "worker"))


def is_chief() -> bool:
    """Whether this process writes the run's outputs: the chief of TF_CONFIG's cluster (the
    first worker when there is no chief), or any process outside a cluster."""
    config = cluster()
    task = config.get("task") or {}
    if not task or cluster_tasks() <= 1:
        return True
    kind, index = task.get("type"), int(task.get("index", 0))
    if kind == "chief":
        return True
    return kind == "worker" and index == 0 and "chief" not in (config.get("cluster") or {})


def task_output_dir(output_dir: str) -> str:
    """Where this process writes a model it exports: ``output_dir`` on the chief; a
    sibling folder of its own on every other worker, which must save too (saving can
    involve every worker's collective ops) but whose copy nobody reads."""
    if is_chief():
        return output_dir
    task = cluster().get("task") or {}
    return f"{output_dir.rstrip('/')}.{task.get('type', 'worker')}-{task.get('index', 0)}"


def _tpu_name() -> str | None:
    return os.environ.get("TPU_NAME") or None


def _resolve(kind: str) -> str:
    if kind != "auto":
        return kind
    if _tpu_name():
        return "tpu"
    if cluster_tasks() > 1:
        return "multi_worker"
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return "mirrored"
    return "default"


def strategy(kind: str = "auto") -> tf.distribute.Strategy:
    """The strategy ``kind`` names (one of KINDS; see the module's description). One per
    kind and process (a cluster's collective ops are set up once): asking again returns
    the same strategy. "mirrored" spans the local GPUs, or, without any, every logical CPU
    device (a CPU split with ``tf.config.set_logical_device_configuration``)."""
    check_fields(kind, "off")
    kind = _resolve(kind)
    if kind == "default":
        return tf.distribute.get_strategy()
    if kind not in _STRATEGIES:
        if kind == "tpu":
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
                tpu=_tpu_name() or "local")
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
            _STRATEGIES[kind] = tf.distribute.TPUStrategy(resolver)
        elif kind == "multi_worker":
            try:
                _STRATEGIES[kind] = tf.distribute.MultiWorkerMirroredStrategy()
            except RuntimeError as e:  # "Collective ops must be configured at program startup"
                raise RuntimeError(
                    "train.distribute: MultiWorkerMirroredStrategy must be set up before "
                    "TensorFlow runs any op in the process; ask for the plan (or the "
                    "strategy) first, as the apps' fit hooks do") from e
        else:
            devices = (tf.config.list_logical_devices("GPU")
                       or tf.config.list_logical_devices("CPU"))
            _STRATEGIES[kind] = tf.distribute.MirroredStrategy(
                devices=[d.name for d in devices])
    return _STRATEGIES[kind]


def precision_policy(setting: str, chosen: tf.distribute.Strategy) -> str:
    """The Keras dtype policy of ``train.mixed_precision`` under ``chosen``: "auto" is
    mixed_bfloat16 on a TPU, mixed_float16 on GPUs, float32 on the CPU."""
    check_fields("auto", setting)
    if setting == "off":
        return "float32"
    if setting != "auto":
        return setting
    if isinstance(chosen, tf.distribute.TPUStrategy):
        return "mixed_bfloat16"
    return "mixed_float16" if tf.config.list_logical_devices("GPU") else "float32"


def float32_outputs(model: keras.Model) -> None:
    """Makes the layers that compute ``model``'s outputs compute in float32 (their
    variables are float32 under a mixed policy already): a softmax, a loss on the outputs
    and the served outputs stay float32 while the layers before them run in 16 bits."""
    for output in model.outputs:
        layer = output._keras_history.operation
        if isinstance(layer, keras.Model):
            float32_outputs(layer)
        elif isinstance(layer, keras.layers.Layer) and \
                layer.dtype_policy.compute_dtype != "float32":
            layer.dtype_policy = "float32"


def _keras_fixes() -> None:
    """Two fixes of Keras 3's TensorFlow trainer under a strategy (3.12; both fail for
    every model.fit under MultiWorkerMirroredStrategy, keras-team/keras#20585):

    - ``TensorFlowTrainer._maybe_symbolic_build`` averages the first batch over the
      replicas only to learn its shapes; under MultiWorkerMirroredStrategy that reduce
      fails for every (x, y) batch (PerReplica values "with an unsupported type"), under
      MirroredStrategy when the batch does not split evenly (a validation split smaller
      than the global batch). The first replica's share has the same shapes and needs no
      collective op: the build takes it.
    - ``reduce_per_replica`` averages the logs (scalars) of several workers with
      ``strategy.reduce("MEAN", v, axis=0)``, which fails for a scalar; the average over
      the replicas is ``axis=None`` (what it computes on one worker).
    """
    from keras.src import tree  # noqa: PLC0415
    from keras.src.backend.tensorflow import trainer  # noqa: PLC0415

    cls = trainer.TensorFlowTrainer
    if getattr(cls._maybe_symbolic_build, "suite_fixed", False):
        return
    original_build, original_reduce = cls._maybe_symbolic_build, trainer.reduce_per_replica

    def local(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return value.values[0]
        return value

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None or iterator is None:
            return original_build(self, iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            data_batch = tree.map_structure(local, next(it))
            break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and \
                trainer._collective_all_reduce_multi_worker(strategy):
            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None),
                                      values)
        return original_reduce(values, strategy, reduction)

    maybe_symbolic_build.suite_fixed = True
    cls._maybe_symbolic_build = maybe_symbolic_build
    trainer.reduce_per_replica = reduce_per_replica


@dataclasses.dataclass(frozen=True)
class Plan:
    """How one training run uses the devices (``plan``)."""

    strategy: tf.distribute.Strategy
    replicas: int  # replicas in sync (devices over all workers)
    batch_size: int  # the global batch: train.batch_size, x replicas when scaled
    learning_rate: float  # train.learning_rate, x replicas when scaled
    policy: str  # the Keras dtype policy layers are built with
    jit_compile: bool | str  # model.compile's: "auto" (Keras decides) or the setting

    @property
    def mixed(self) -> bool:
        """Whether layers compute in 16 bits."""
        return self.policy.startswith("mixed_")

    def full_batches(self, batches: tf.data.Dataset, examples: int | None = None
                     ) -> tf.data.Dataset:
        """Training batches of ``batch_size`` (``examples`` of them in all, counted with a
        pass over ``batches`` when not given): as they are on one replica. With several,
        without a last partial batch, whose share can be empty on a replica
        (BatchNormalization's statistics of no examples are NaN; a TPU needs full batches
        anyway), and with the number of batches known: a Keras 3 step under a strategy
        that stops at the end of a dataset of unknown length has already run on some
        replicas (their iteration counts, hence Adam's steps, then differ)."""
        if self.replicas == 1:
            return batches
        full = self.sharded(batches.rebatch(self.batch_size, drop_remainder=True))
        if batches.cardinality() == tf.data.INFINITE_CARDINALITY:
            return full
        if examples is None:
            examples = int(batches.reduce(np.int64(0), lambda n, batch: n + tf.cast(
                tf.shape(tf.nest.flatten(batch)[0])[0], tf.int64)))
        if examples < self.batch_size:
            raise ValueError(f"train.batch_size: {self.replicas} replicas train on full "
                             f"batches of {self.batch_size}, but the training data holds "
                             f"{examples} examples; use a smaller batch size")
        return full.apply(tf.data.experimental.assert_cardinality(examples // self.batch_size))

    def sharded(self, batches: tf.data.Dataset | None) -> tf.data.Dataset | None:
        """``batches`` (training or validation batches that Keras spreads over the
        replicas) split between workers by batch, not by file: every worker reads all
        files and keeps its share of each batch (by file, a split of fewer files than
        workers fails, and workers with files of different sizes would run different
        numbers of steps). As they are on one replica."""
        if batches is None or self.replicas == 1:
            return batches
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = \
            tf.data.experimental.AutoShardPolicy.DATA
        return batches.with_options(options)

    @contextlib.contextmanager
    def scope(self) -> Iterator[Plan]:
        """The strategy's scope with the plan's dtype policy (the previous policy is back
        afterwards): build and compile models in it."""
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self.policy)
        try:
            with self.strategy.scope():
                yield self
        finally:
            keras.config.set_dtype_policy(previous)

    def prepare(self, model: keras.Model, *, float32: Sequence[keras.Layer] = ()
                ) -> keras.Model:
        """Readies a model built in ``scope()`` for training under the plan (``compile``
        does it; a custom training loop calls it). Under a mixed policy, float32 outputs
        (``float32_outputs``) and ``float32``: more layers whose outputs leave the model (a
        served model's outputs where it is not the trained one, features a served output
        reads), float32 too (a model: its outputs). Under several replicas,
        BatchNormalization normalises with the statistics of the global batch
        (``synchronized``): the replicas then keep the same moving statistics, as one device
        training on the global batch would (Keras 3 otherwise keeps one set per replica and
        saves the first replica's)."""
        if self.mixed:
            for layer in (model, *float32):
                if isinstance(layer, keras.Model):
                    float32_outputs(layer)
                else:
                    layer.dtype_policy = "float32"
        if self.replicas > 1:
            for layer in model._flatten_layers(include_self=False, recursive=True):
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.synchronized = True
        return model

    def compile(self, model: keras.Model, *, float32: Sequence[keras.Layer] = (),
                **kwargs: Any) -> keras.Model:
        """``prepare(model, float32=...)``, then ``model.compile(**kwargs)`` with the plan's
        ``jit_compile`` unless ``kwargs`` sets it (a model with ops XLA cannot compile).
        Keras adds loss scaling to the optimizer under mixed_float16."""
        self.prepare(model, float32=float32)
        kwargs.setdefault("jit_compile", self.jit_compile)
        model.compile(**kwargs)
        return model


def plan(train: Any) -> Plan:
    """The plan of a run configured by ``train`` (an app's TrainConfig; fields missing
    from a config that does not extend TrainBase take TrainBase's defaults)."""
    fields = {name: getattr(train, name, default) for name, default in DEFAULTS.items()}
    check_fields(fields["distribute"], fields["mixed_precision"])
    chosen = strategy(fields["distribute"])
    replicas = int(chosen.num_replicas_in_sync)
    if chosen is not tf.distribute.get_strategy():
        _keras_fixes()
    batch = int(train.batch_size) * (replicas if fields["scale_batch_with_replicas"] else 1)
    rate = float(train.learning_rate) * (replicas if fields["scale_lr_with_replicas"] else 1)
    jit = "auto" if fields["jit_compile"] is None else bool(fields["jit_compile"])
    return Plan(chosen, replicas, batch, rate,
                precision_policy(fields["mixed_precision"], chosen), jit)
