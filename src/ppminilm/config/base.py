"""Typed records: dataclasses that check their field types and round-trip through JSON.

:class:`Record` is the base of every stage config and of every contract that crosses a stage
boundary (:mod:`ppminilm.contracts`). Field types are enforced at construction from the
annotations, so a record never holds a value of the wrong kind:

* ``int`` takes an int (KFP widens ints to floats on the way: ``32.0`` becomes ``32``; ``32.5``
  is refused, never truncated); ``float`` takes an int or a float, never NaN or infinity;
  ``bool`` and ``str`` take exactly that type.
* ``Sequence[X]`` / ``tuple[X, ...]`` / ``list[X]`` take a list or tuple (a string is refused,
  never split into characters) and check every item; sequences are stored as tuples.
* A nested record type takes an instance or a mapping; ``X | None`` also takes ``None``;
  ``dict[str, X]`` checks its values; ``Any`` takes any JSON value.

:class:`StageConfig` adds value validation (``validate``) and the profile key (``stage``).
Every failure is a :class:`~ppminilm.errors.ConfigError` naming ``Class.field``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ppminilm.errors import ConfigError
from ppminilm.io import atomic_write_json, read_json_file

R = TypeVar("R", bound="Record")
T = TypeVar("T", bound="StageConfig")

_SEQUENCE_ORIGINS = (Sequence, tuple, list, typing.Sequence)


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        tuple: "a list",
        dict: "an object",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp in (int, float, bool, str):
        return {int: "an integer", float: "a finite number", bool: "true/false", str: "a string"}[
            tp
        ]
    if origin in _SEQUENCE_ORIGINS:
        (item,) = typing.get_args(tp)[:1] or (Any,)
        return f"a list of {_describe(item).removeprefix('a ').removeprefix('an ')}s"
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and issubclass(tp, Record):
        return f"a {tp.__name__} object"
    return "a JSON value"


def check_value(tp: Any, value: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it normalised (tuples, records).

    Args:
        tp: A resolved type annotation.
        value: The value to check.
        where: ``Class.field`` (or ``Class.field[2]``) for the message.

    Raises:
        ConfigError: Naming ``where``, what was expected and what was found.
    """
    origin = typing.get_origin(tp)
    if tp is Any or tp is object:
        return value
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # X | None: the error of X itself names the inner field
            return check_value(options[0], value, where)
        for arg in options:
            try:
                return check_value(arg, value, where)
            except ConfigError:
                continue
        raise _bad(where, _describe(tp), value)
    if tp is int:
        if isinstance(value, float) and value.is_integer() and math.isfinite(value):
            return int(value)  # KFP widens ints to floats
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _bad(where, "an integer", value)
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{where}={value!r}: expected a finite number")
            return float(value)
        raise _bad(where, "a finite number", value)
    if tp is bool or tp is str:
        if type(value) is not tp:
            raise _bad(where, _describe(tp), value)
        return value
    if isinstance(tp, type) and issubclass(tp, Record):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return tp.from_dict(value, where=where)
        raise _bad(where, _describe(tp), value)
    if origin in _SEQUENCE_ORIGINS:
        if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
            raise _bad(where, _describe(tp), value)
        args = typing.get_args(tp)
        item = args[0] if args else Any
        return tuple(check_value(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise _bad(where, "an object", value)
        args = typing.get_args(tp)
        item = args[1] if len(args) == 2 else Any
        return {str(k): check_value(item, v, f"{where}[{k!r}]") for k, v in value.items()}
    return value


def _bad(where: str, expected: str, value: Any) -> ConfigError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return ConfigError(f"{where}={shown}: expected {expected}, got {_type_name(value)}")


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclasses.dataclass
class Record:
    """A typed, JSON-serialisable dataclass (see the module docstring)."""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            where = f"{type(self).__name__}.{f.name}"
            setattr(self, f.name, check_value(hints[f.name], getattr(self, f.name), where))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict of all fields (tuples become lists)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[R], data: Any, where: str = "") -> R:
        """Build a record from a mapping, rejecting unknown keys.

        Args:
            data: Field values; missing fields take their defaults.
            where: Where the mapping came from (file, ``--overrides``), for messages.

        Returns:
            The checked record.

        Raises:
            ConfigError: On a non-mapping, an unknown or missing key, or a bad value.
        """
        prefix = f"{where}: " if where else ""
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"{prefix}{cls.__name__} expects an object of fields, got {_type_name(data)}"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(
                f"{prefix}unknown {cls.__name__} key(s) {unknown}; allowed keys: {sorted(names)}"
            )
        try:
            return cls(**dict(data))
        except TypeError as exc:  # a required field is missing
            raise ConfigError(f"{prefix}{cls.__name__}: {exc}") from None

    def replace(self: R, **changes: Any) -> R:
        """Return a checked copy with some fields changed (unknown fields are an error)."""
        return self.from_dict({**self.to_dict(), **changes})

    def save(self, path: str | Path) -> Path:
        """Write the record as JSON (atomically, in the project's JSON style)."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls: type[R], path: str | Path) -> R:
        """Read a record from a JSON file.

        Raises:
            ConfigError: If the file is missing, not JSON (``file:line:column``) or has bad
                keys or values (the message names the file).
        """
        return cls.from_dict(read_json_file(path, ConfigError), where=str(path))


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _check_choice(cls_name: str, field: str, value: Any, allowed: Iterable[Any]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ConfigError(f"{cls_name}.{field}={value!r} is not allowed; expected one of {allowed}")


def _check_positive(cls_name: str, field: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{cls_name}.{field}={value!r} must be {bound}")


def _check_fraction(
    cls_name: str, field: str, value: float, low: float = 0.0, high: float = 1.0
) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{cls_name}.{field}={value!r} must be in [{low}, {high}]")


@dataclasses.dataclass
class StageConfig(Record):
    """Base class of the stage configs: typed fields (:class:`Record`) plus ``validate``."""

    #: Name of the stage, used as the key in profiles and overrides.
    stage: ClassVar[str] = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.validate()

    def validate(self) -> None:
        """Check field values; subclasses raise ``ConfigError`` naming the field."""
