"""JSON-safe frozen dataclass configs: the base of every app's config, conversion to and
from plain dicts, and typed overrides of single fields.

Configs travel through TFX ``custom_config`` (JSON) and are written next to a run's
outputs, so every config is a tree of frozen dataclasses holding only JSON types (tuples
become lists and come back as tuples). Values coming from outside (``--set FIELD=JSON``, a
custom_config) are checked against the field's type before anything runs: a string where
an integer belongs stops with the field's name, not deep inside training.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypeVar

T = TypeVar("T")
C = TypeVar("C", bound="AppConfig")


@dataclasses.dataclass(frozen=True)
class TrainBase:
    """What every app's training settings hold; an app's TrainConfig adds its own."""

    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    # Devices and workers (suite.distribute): the tf.distribute strategy ("auto",
    # "default", "mirrored", "multi_worker", "tpu"); the dtype policy ("off", "auto":
    # mixed_float16 on GPUs and mixed_bfloat16 on a TPU, or a policy name); XLA (null: Keras
    # decides); the batch size per replica instead of per step, and the learning rate
    # times the replicas.
    distribute: str = "auto"
    mixed_precision: str = "off"
    jit_compile: bool | None = None
    scale_batch_with_replicas: bool = False
    scale_lr_with_replicas: bool = False

    DISTRIBUTE: ClassVar[tuple[str, ...]] = ("auto", "default", "mirrored", "multi_worker",
                                             "tpu")
    MIXED_PRECISION: ClassVar[tuple[str, ...]] = ("off", "auto", "float32", "mixed_float16",
                                                  "mixed_bfloat16")

    def __post_init__(self):
        # Checked when the config is made (a preset, --set, a custom_config), naming the field.
        for name, choices in (("distribute", self.DISTRIBUTE),
                              ("mixed_precision", self.MIXED_PRECISION)):
            if getattr(self, name) not in choices:
                raise ValueError(f"train.{name}: expected one of {list(choices)}, got "
                                 f"{getattr(self, name)!r}")


@dataclasses.dataclass(frozen=True)
class EdgeConfig:
    """The gate on the TFLite variants of a pushed model (every app's ``edge`` field).

    A variant whose metric on held-out examples drops by more than the limit against the
    served model is rejected and not published; the classifier metrics apply to
    classifiers (AUC to binary ones), recall@k and MRR@k to rankers. Of the accepted
    variants, the smallest whose single-example latency is at most ``max_latency_ratio``
    times the fastest one's is the one to ship.
    """

    max_accuracy_drop: float = 0.01
    max_auc_drop: float = 0.005
    max_recall_drop: float = 0.01
    max_mrr_drop: float = 0.01
    max_latency_ratio: float = 1.5
    # int8 files up to this size are also run in the microcontroller interpreter (TFLM).
    mcu_max_kib: float = 1024.0
    # > 0: also a magnitude-pruned int8 variant ("pruned_int8") at this sparsity, fine-tuned
    # for prune_epochs towards the served model's outputs on up to finetune_examples
    # training examples (serving.pruning).
    prune_sparsity: float = 0.0
    prune_epochs: int = 4
    finetune_examples: int = 2000
    # True: also a student ("student_float32", "student_int8"): the app's small model
    # (TFLiteSpec.student) trained from the served model's outputs at distill_temperature
    # (weight distill_alpha) and the labels (weight 1 - distill_alpha) on inputs mixed
    # pairwise with Beta(distill_mixup) weights (0: unmixed), for at most distill_epochs on
    # up to distill_examples training examples (serving.distill).
    distill: bool = False
    distill_alpha: float = 0.5
    distill_temperature: float = 2.0
    distill_mixup: float = 0.4
    distill_epochs: int = 60
    distill_examples: int = 20000


@dataclasses.dataclass(frozen=True)
class EnergyConfig:
    """Where the training's electricity comes from (every app's ``energy`` field), for the
    energy and CO2 figures of ``suite.energy``."""

    # ISO 3166-1 alpha-3 code of the grid's country (CodeCarbon's table of mean intensities).
    country_iso_code: str = "DEU"
    # > 0: this grid intensity (g CO2eq per kWh) instead of the country's mean.
    grid_g_co2_per_kwh: float = 0.0
    # Seconds between power samples.
    measure_power_secs: float = 5.0


@dataclasses.dataclass(frozen=True)
class DriftConfig:
    """How far serving traffic may move from the training data before ``suite drift``
    fails (every app's ``drift`` field; TFDV's comparators, per feature)."""

    # Numeric features: Jensen-Shannon divergence of the request histogram from training's.
    max_jensen_shannon: float = 0.1
    # Categorical features: L-infinity distance of the value frequencies.
    max_l_infinity: float = 0.1
    # Buckets of the training statistics' numeric histograms (StatisticsGen), which the
    # requests' histograms match. A heavy-tailed signal needs many (a vibration signal in g
    # puts nearly all its values in one or two of 10 equal-width buckets, where a gain change
    # is invisible); a scalar feature logged a few hundred times wants few (the divergence
    # of two samples of one distribution grows with the buckets).
    histogram_buckets: int = 10


@dataclasses.dataclass(frozen=True)
class ModelCardConfig:
    """What only a person can say about a model, for its model card (every app's ``card``
    field); empty fields are printed as placeholders to fill in."""

    owner: str = ""
    licence: str = ""
    intended_users: str = ""
    contact: str = ""
    # A slice whose headline metric is more than this below the overall figure is listed
    # as a known limitation.
    max_slice_gap: float = 0.05
    # Bootstrap resamples of the eval examples for the confidence intervals.
    bootstrap_samples: int = 1000


@dataclasses.dataclass(frozen=True)
class AppConfig:
    """Base of an app's root config (a frozen dataclass): named presets, a check, and the
    parts every app has (the TFLite gate, the training's grid, the drift limits, the model
    card's fields).

    An app's config module defines the dataclass, then its presets, and sets
    ``<Config>.PRESETS``; ``check`` returns the config when its fields are consistent and
    raises naming the bad field otherwise.
    """

    edge: EdgeConfig = dataclasses.field(default_factory=EdgeConfig)
    energy: EnergyConfig = dataclasses.field(default_factory=EnergyConfig)
    drift: DriftConfig = dataclasses.field(default_factory=DriftConfig)
    card: ModelCardConfig = dataclasses.field(default_factory=ModelCardConfig)

    PRESETS: ClassVar[Mapping[str, Any]] = {}
    # Declared checks that ``check`` runs: dotted field -> allowed values, and dotted field
    # -> smallest value.
    CHOICES: ClassVar[Mapping[str, Sequence[Any]]] = {}
    AT_LEAST: ClassVar[Mapping[str, float]] = {"train.epochs": 1, "train.batch_size": 1}

    @classmethod
    def preset(cls: type[C], name: str) -> C:
        """The named preset; an unknown name lists the known ones."""
        if name not in cls.PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(cls.PRESETS)}")
        return cls.PRESETS[name]

    def check(self: C) -> C:
        """The config itself when consistent; raises naming the first bad field. Runs the
        declared CHOICES and AT_LEAST checks; apps extend it with their own rules."""
        for dotted, choices in self.CHOICES.items():
            self.check_choice(dotted, choices)
        for dotted, minimum in self.AT_LEAST.items():
            self.check_at_least(minimum, dotted)
        self.check_at_least(0.0, *(f"edge.{f.name}" for f in dataclasses.fields(EdgeConfig)))
        self.check_at_least(1.0, "edge.max_latency_ratio")
        if not self.edge.prune_sparsity < 1.0:
            raise ValueError(f"edge.prune_sparsity: expected 0 <= s < 1, got "
                             f"{self.edge.prune_sparsity}")
        self.check_at_least(0.0, "energy.grid_g_co2_per_kwh")
        self.check_at_least(0.1, "energy.measure_power_secs")
        code = self.energy.country_iso_code
        if not (len(code) == 3 and code.isalpha() and code.isupper()):
            raise ValueError(f"energy.country_iso_code: expected an ISO 3166-1 alpha-3 "
                             f"code such as DEU or USA, got {code!r}")
        self.check_at_least(0.0, "drift.max_jensen_shannon", "drift.max_l_infinity")
        self.check_at_least(2, "drift.histogram_buckets")
        self.check_at_least(0.0, "card.max_slice_gap")
        self.check_at_least(10, "card.bootstrap_samples")
        return self

    def check_choice(self, dotted: str, choices: Sequence[Any]) -> None:
        """Raises naming ``dotted`` when its value is not one of ``choices``."""
        value = _get(self, dotted)
        if value not in choices:
            raise ValueError(f"{dotted}: expected one of {list(choices)}, got {value!r}")

    def check_at_least(self, minimum: float, *dotted: str) -> None:
        """Raises naming the first of the ``dotted`` fields whose value is below
        ``minimum``."""
        for name in dotted:
            value = _get(self, name)
            if value < minimum:
                raise ValueError(f"{name}: expected >= {minimum}, got {value}")

    @classmethod
    def from_custom(cls: type[C], custom_config: dict | None) -> C:
        """The config carried in a TFX custom_config (the class defaults when absent)."""
        return config_from_custom(cls, custom_config)


def _get(config: Any, dotted: str) -> Any:
    for name in dotted.split("."):
        config = getattr(config, name)
    return config


def to_dict(config: Any) -> dict:
    """Returns the config as a dict of JSON types."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _type_name(tp: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if tp in names:
        return names[tp]
    if typing.get_origin(tp) is tuple:
        return "a list"
    if dataclasses.is_dataclass(tp):
        return "an object"
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, where: str) -> Any:
    """``value`` (JSON types) as a value of type ``tp``; ValueError naming ``where`` when it
    is not one."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in typing.get_args(tp):
                return None
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        errors = []
        for arg in args:
            try:
                return _convert(arg, value, where)
            except ValueError as e:
                errors.append(e)
        if value is None:
            raise ValueError(f"{where}: expected {_type_name(args[0])}, got null")
        raise errors[0]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {json.dumps(value)}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            inner = [args[0]] * len(value)
        elif args:
            if len(args) != len(value):
                raise ValueError(f"{where}: expected a list of {len(args)} values, got "
                                 f"{len(value)}")
            inner = list(args)
        else:
            inner = [Any] * len(value)
        return tuple(_convert(t, v, f"{where}[{i}]")
                     for i, (t, v) in enumerate(zip(inner, value, strict=True)))
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {json.dumps(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {json.dumps(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise ValueError(f"{where}: expected a finite number, got {json.dumps(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {json.dumps(value)}")
        return value
    return value


def _fields_of(cls: type, where: str) -> str:
    names = sorted(f.name for f in dataclasses.fields(cls))
    return f"{where}.[{', '.join(names)}]" if where else ", ".join(names)


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """Builds a dataclass from a dict, rejecting unknown keys and values of the wrong type
    with their path."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object, got {json.dumps(data)[:80]}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; expected some of {sorted(names)}")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def replace_path(config: T, dotted: str, value: Any, _prefix: str = "") -> T:
    """A copy of ``config`` with the field at ``dotted`` (e.g. "train.epochs") replaced by
    ``value`` (JSON types), checked against the field's type. An unknown field lists the
    fields at that level."""
    head, _, rest = dotted.partition(".")
    here = f"{_prefix}{head}"
    fields = {f.name for f in dataclasses.fields(config)}
    if head not in fields:
        raise ValueError(f"unknown config field {_prefix + dotted!r}; expected one of "
                         f"{_fields_of(type(config), _prefix.rstrip('.'))}")
    current = getattr(config, head)
    if rest:
        if not dataclasses.is_dataclass(current):
            raise ValueError(f"unknown config field {_prefix + dotted!r}: {here} is a single "
                             "value, not a group of fields")
        value = replace_path(current, rest, value, f"{here}.")
    else:
        hint = typing.get_type_hints(type(config))[head]
        value = _convert(hint, value, here)
    return dataclasses.replace(config, **{head: value})


def import_dotted(path: str) -> Any:
    """The module-level object at ``package.module.name``: how a callable or a class
    travels in a JSON config or a TFX custom_config (``pipelines.builder.dotted_path``)."""
    import importlib

    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def config_from_custom(cls: type[T], custom_config: dict | None) -> T:
    """The app config of type ``cls`` carried in a TFX custom_config under "config" (the
    class defaults when absent)."""
    if not custom_config or "config" not in custom_config:
        return cls()
    return from_dict(cls, custom_config["config"])
