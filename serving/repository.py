"""The TF Serving model repository: models under a base path, and the server's config files.

The pipeline's atomic pusher publishes each model as ``<base>/<model_name>/<version>/``
(numeric versions, renamed into place in one step). Next to the ``<base>`` folder this module
writes the three text-proto files the official server takes, so that

    tensorflow_model_server --port=8500 --rest_api_port=8501 \\
        --model_config_file=<dir>/models.config \\
        --enable_batching --batching_parameters_file=<dir>/batching_parameters.txt \\
        --monitoring_config_file=<dir>/monitoring.config

starts on the folder unchanged, and the suite's own server (``serving.server``) reads the
same files. ``ModelServerConfig`` comes from tensorflow-serving-api; ``BatchingParameters``
and ``MonitoringConfig`` are not shipped there and come from ``serving.protos`` (generated
from TF Serving's own .proto sources, see serving/protos/README.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from google.protobuf import text_format

import suite  # noqa: F401  (Keras policy before TensorFlow)
from serving.versions import list_versions

DEFAULT_BASE = os.path.join("workspace", "serving", "models")
MODELS_CONFIG = "models.config"
BATCHING_PARAMETERS = "batching_parameters.txt"
MONITORING_CONFIG = "monitoring.config"
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions of a model are served: the ``num_versions`` newest (``latest``), the
    listed ``versions`` (``specific``) or every version on disk (``all``)."""

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("latest", "specific", "all"):
            raise ValueError(f"version policy: expected latest, specific or all, got {self.kind!r}")
        if self.kind == "latest" and self.num_versions < 1:
            raise ValueError(f"version policy latest: num_versions must be >= 1, got "
                             f"{self.num_versions}")
        if self.kind == "specific" and not self.versions:
            raise ValueError("version policy specific: expected at least one version")

    @classmethod
    def parse(cls, text: str) -> VersionPolicy:
        """``latest``, ``latest:N``, ``all`` or ``specific:V1,V2``."""
        kind, _, arg = text.partition(":")
        try:
            if kind == "latest":
                return cls("latest", num_versions=int(arg) if arg else 1)
            if kind == "specific":
                return cls("specific", versions=tuple(int(v) for v in arg.split(",") if v))
        except ValueError:
            raise ValueError(f"version policy {text!r}: expected integers after ':'") from None
        if kind == "all" and not arg:
            return cls("all")
        raise ValueError(f"version policy {text!r}: expected latest[:N], all or specific:V1,V2")

    def select(self, on_disk: Sequence[int]) -> list[int]:
        """The versions this policy serves among those on disk, ascending."""
        ordered = sorted(on_disk)
        if self.kind == "latest":
            return ordered[-self.num_versions:]
        if self.kind == "specific":
            return [v for v in ordered if v in self.versions]
        return ordered


@dataclass(frozen=True)
class ModelEntry:
    """One served model: its name, base path (holding numeric version folders), version
    policy and version labels (label -> version)."""

    name: str
    base_path: str
    policy: VersionPolicy = field(default_factory=VersionPolicy)
    labels: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchingConfig:
    """Server-side batching: concurrent requests are merged into batches of at most
    ``max_batch_size`` rows, waiting at most ``batch_timeout_micros`` for a batch to fill."""

    max_batch_size: int = 32
    batch_timeout_micros: int = 2000
    num_batch_threads: int = max(2, os.cpu_count() or 1)
    max_enqueued_batches: int = 100

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "num_batch_threads", "max_enqueued_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"batching: {name} must be >= 1, got {getattr(self, name)}")
        if self.batch_timeout_micros < 0:
            raise ValueError(f"batching: batch_timeout_micros must be >= 0, got "
                             f"{self.batch_timeout_micros}")


@dataclass(frozen=True)
class ServingConfigFiles:
    """Paths of the three files written by ``write_serving_configs``."""

    model_config: str
    batching_parameters: str
    monitoring: str


def discover_models(base: str) -> list[str]:
    """Names of the model folders under ``base`` that hold at least one version."""
    if not os.path.isdir(base):
        return []
    return sorted(n for n in os.listdir(base) if list_versions(os.path.join(base, n)))


def model_server_config(entries: Sequence[ModelEntry]):
    """A ``tensorflow.serving.ModelServerConfig`` listing ``entries`` (platform tensorflow)."""
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be unique, got {names}")
    for entry in entries:
        model = config.model_config_list.config.add(
            name=entry.name, base_path=os.path.abspath(entry.base_path),
            model_platform="tensorflow")
        policy = model.model_version_policy
        if entry.policy.kind == "latest":
            policy.latest.num_versions = entry.policy.num_versions
        elif entry.policy.kind == "specific":
            policy.specific.versions.extend(entry.policy.versions)
        else:
            policy.all.SetInParent()
        for label, version in sorted(entry.labels.items()):
            model.version_labels[label] = int(version)
    return config


def batching_parameters(batching: BatchingConfig):
    """A ``tensorflow.serving.BatchingParameters`` (the --batching_parameters_file proto)."""
    from serving.protos import session_bundle_config_pb2

    params = session_bundle_config_pb2.BatchingParameters()
    params.max_batch_size.value = batching.max_batch_size
    params.batch_timeout_micros.value = batching.batch_timeout_micros
    params.num_batch_threads.value = batching.num_batch_threads
    params.max_enqueued_batches.value = batching.max_enqueued_batches
    return params


def batching_config(params) -> BatchingConfig:
    """The ``BatchingConfig`` of a ``BatchingParameters`` proto (TF Serving's defaults for
    fields it leaves unset)."""
    defaults = BatchingConfig(max_batch_size=1000, batch_timeout_micros=0,
                              max_enqueued_batches=10)

    def value(name: str) -> int:
        return getattr(params, name).value if params.HasField(name) else getattr(defaults, name)

    return BatchingConfig(max_batch_size=value("max_batch_size"),
                          batch_timeout_micros=value("batch_timeout_micros"),
                          num_batch_threads=value("num_batch_threads"),
                          max_enqueued_batches=value("max_enqueued_batches"))


def monitoring_config(enable: bool = True, path: str = PROMETHEUS_PATH):
    """A ``tensorflow.serving.MonitoringConfig`` exposing Prometheus metrics at ``path``."""
    from serving.protos import monitoring_config_pb2

    return monitoring_config_pb2.MonitoringConfig(
        prometheus_config=monitoring_config_pb2.PrometheusConfig(enable=enable, path=path))


def _write_text_proto(path: str, message) -> None:
    """Writes a message as a text proto, atomically."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text_format.MessageToString(message))
    os.replace(tmp, path)  # a server polling the file never reads half of it


def write_serving_configs(
    base: str,
    entries: Sequence[ModelEntry] | None = None,
    batching: BatchingConfig = BatchingConfig(),
    *,
    config_dir: str | None = None,
    prometheus_path: str = PROMETHEUS_PATH,
) -> ServingConfigFiles:
    """Writes models.config, batching_parameters.txt and monitoring.config next to ``base``
    (in ``config_dir``, by default the folder holding ``base``) and returns their paths.

    Without ``entries``, every model found under ``base`` is served with the latest version.
    """
    if entries is None:
        entries = [ModelEntry(n, os.path.join(base, n)) for n in discover_models(base)]
        if not entries:
            raise FileNotFoundError(f"{base}: expected model folders <name>/<version>/ "
                                    "(run `make demo` to push one)")
    out = config_dir or os.path.dirname(os.path.abspath(base))
    os.makedirs(out, exist_ok=True)
    files = ServingConfigFiles(os.path.join(out, MODELS_CONFIG),
                               os.path.join(out, BATCHING_PARAMETERS),
                               os.path.join(out, MONITORING_CONFIG))
    _write_text_proto(files.model_config, model_server_config(entries))
    _write_text_proto(files.batching_parameters, batching_parameters(batching))
    _write_text_proto(files.monitoring, monitoring_config(True, prometheus_path))
    return files


def _read_text_proto(path: str, message):
    """Parses a text-proto file into ``message``; errors name the file."""
    try:
        with open(path) as f:
            return text_format.Parse(f.read(), message)
    except text_format.ParseError as e:
        raise ValueError(f"{path}: not a valid {message.DESCRIPTOR.full_name} text proto: "
                         f"{e}") from None


def read_model_server_config(path: str):
    """Parses a models.config file into a ``ModelServerConfig``."""
    from tensorflow_serving.config import model_server_config_pb2

    return _read_text_proto(path, model_server_config_pb2.ModelServerConfig())


def read_batching_parameters(path: str):
    """Parses a batching parameters file into a ``BatchingParameters``."""
    from serving.protos import session_bundle_config_pb2

    return _read_text_proto(path, session_bundle_config_pb2.BatchingParameters())


def read_monitoring_config(path: str):
    """Parses a monitoring config file into a ``MonitoringConfig``."""
    from serving.protos import monitoring_config_pb2

    return _read_text_proto(path, monitoring_config_pb2.MonitoringConfig())


def model_entries(config) -> list[ModelEntry]:
    """The ``ModelEntry`` list of a ``ModelServerConfig`` (its model_config_list)."""
    if config.WhichOneof("config") != "model_config_list":
        raise ValueError("only model_config_list model server configs are supported")
    entries = []
    for model in config.model_config_list.config:
        if model.model_platform not in ("", "tensorflow"):
            raise ValueError(f"model {model.name!r}: platform {model.model_platform!r} is not "
                             "served (expected tensorflow)")
        which = model.model_version_policy.WhichOneof("policy_choice")
        if which == "specific":
            policy = VersionPolicy("specific", versions=tuple(
                model.model_version_policy.specific.versions))
        elif which == "all":
            policy = VersionPolicy("all")
        else:  # TF Serving's default: the latest version
            latest = model.model_version_policy.latest.num_versions
            policy = VersionPolicy("latest", num_versions=latest or 1)
        entries.append(ModelEntry(model.name, model.base_path, policy,
                                  dict(model.version_labels)))
    return entries
