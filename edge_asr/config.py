"""One YAML config file, validated against dataclasses.

Each feature owns a section dataclass; `Config` gathers them. An unknown key or a wrong type is a
ConfigError naming the key and the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from edge_asr.dictation import DictateSection
from edge_asr.errors import ConfigError
from edge_asr.escalation import EscalationSection
from wakeword.config import ListenSection

T = TypeVar("T")


@dataclasses.dataclass
class TranscribeSection:
    model: str | None = None
    threads: int | None = None
    beam_size: int = 1
    word_timestamps: bool = True


@dataclasses.dataclass
class Config:
    transcribe: TranscribeSection = dataclasses.field(default_factory=TranscribeSection)
    listen: ListenSection = dataclasses.field(default_factory=ListenSection)
    escalation: EscalationSection = dataclasses.field(default_factory=EscalationSection)
    dictate: DictateSection = dataclasses.field(default_factory=DictateSection)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _convert(value: Any, tp: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        if isinstance(value, dict):  # a mapping can only be the section: name its own bad key
            for arg in args:
                if dataclasses.is_dataclass(arg):
                    return _convert(value, arg, key, source)
        for arg in args:
            if arg is type(None):
                continue
            with contextlib.suppress(ConfigError):
                return _convert(value, arg, key, source)
        raise ConfigError(f"{source}: '{key}' must be {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            allowed = ", ".join(repr(a) for a in typing.get_args(tp))
            raise ConfigError(f"{source}: '{key}' must be one of {allowed}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ConfigError(f"{source}: '{key}' must be a list, got {value!r}")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        items = [_convert(v, item_tp, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' must be a mapping, got {value!r}")
        _, val_tp = typing.get_args(tp) or (str, Any)
        return {str(k): _convert(v, val_tp, f"{key}.{k}", source) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, source, prefix=key)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{source}: '{key}' must be {tp.__name__}, got {value!r}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{source}: '{key}' must be {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: Any, source: str = "config", prefix: str = "") -> T:
    """Build dataclass `cls` from a mapping, rejecting unknown keys and wrong types."""
    where = prefix or "top level"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: '{where}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            raise ConfigError(f"{source}: unknown key '{full}'")
        kwargs[key] = _convert(value, hints[key], full, source)
    missing = [
        n for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        full = f"{prefix}.{missing[0]}" if prefix else missing[0]
        raise ConfigError(f"{source}: missing key '{full}'")
    return cls(**kwargs)


def read_yaml(path: str | Path) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror or e})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{line}") from None


def load_config(path: str | Path | None, cls: type[T] = Config) -> T:  # type: ignore[assignment]
    """Load and validate a config file; no path gives the defaults."""
    if path is None:
        return cls()
    return from_dict(cls, read_yaml(path), str(path))
