"""JSON-safe frozen dataclass configs: conversion to and from plain dicts.

Configs travel through TFX ``custom_config`` (JSON) and are written next to a
run's outputs, so every config is a tree of frozen dataclasses holding only
JSON types (tuples become lists and come back as tuples).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def to_dict(config: Any) -> dict:
    """Returns the config as a dict of JSON types."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(args[0], value, where) if len(args) == 1 else value
    if origin is tuple:
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        return tuple(_convert(inner, v, where) for v in value)
    if tp is float and isinstance(value, int):
        return float(value)
    return value


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """Builds a dataclass from a dict, rejecting unknown keys with their path."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; expected some of {sorted(names)}")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def replace_path(config: T, dotted: str, value: Any) -> T:
    """Returns a copy of ``config`` with the field at ``dotted`` (e.g. "train.epochs") replaced."""
    head, _, rest = dotted.partition(".")
    if not dataclasses.is_dataclass(config) or not any(
            f.name == head for f in dataclasses.fields(config)):
        raise ValueError(f"unknown config field {dotted!r}")
    if rest:
        try:
            value = replace_path(getattr(config, head), rest, value)
        except ValueError:
            raise ValueError(f"unknown config field {dotted!r}") from None
    return dataclasses.replace(config, **{head: value})


def config_from_custom(cls: type[T], custom_config: dict | None) -> T:
    """The app config of type ``cls`` carried in a TFX custom_config under "config" (the
    class defaults when absent)."""
    if not custom_config or "config" not in custom_config:
        return cls()
    return from_dict(cls, custom_config["config"])
