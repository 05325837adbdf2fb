"""Frozen dataclasses that cross a module or process boundary as JSON, and refuse what they do not expect.

A record's ``to_json`` gives plain JSON types (tuples become lists, nested
records dicts); ``from_json`` rebuilds it from such a dict and raises
:class:`RecordError` naming the record, the field and the problem for an
unknown field, a missing one or a value of the wrong type, so a stale or
hand-edited file fails loudly at the boundary instead of deep inside.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar, get_type_hints

from edge_runtime.core.errors import FerError

R = TypeVar("R", bound="JsonRecord")


class RecordError(FerError):
    """A JSON document does not match the record it is read as."""


class JsonRecord:
    """Mixin for frozen dataclasses: ``to_json()`` and ``from_json(raw)`` with strict field checking."""

    def to_json(self) -> dict:
        """The record as a JSON-ready dict."""
        return {item.name: _plain(getattr(self, item.name)) for item in dataclasses.fields(self)}

    @classmethod
    def from_json(cls: type[R], raw: Any, where: str = "") -> R:
        """Rebuild the record from ``raw``; ``where`` names the document in errors."""
        name = where or cls.__name__
        if not isinstance(raw, dict):
            raise RecordError(f"{name}: expected an object, got {type(raw).__name__}")
        fields = {item.name: item for item in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(fields))
        if unknown:
            raise RecordError(f"{name}: unknown field(s) {', '.join(unknown)}; {cls.__name__} has "
                              f"{', '.join(fields)}")
        missing = [key for key, item in fields.items() if key not in raw and _required(item)]
        if missing:
            raise RecordError(f"{name}: missing field(s) {', '.join(missing)}")
        hints = get_type_hints(cls)
        values = {key: _coerce(hints[key], value, f"{name}.{key}") for key, value in raw.items()}
        return cls(**values)


def _required(item: dataclasses.Field) -> bool:
    return item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING


def _plain(value: Any) -> Any:
    if isinstance(value, JsonRecord):
        return value.to_json()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """``value`` checked against ``hint`` (records, optionals, tuples, dicts and scalars)."""
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in arguments:
            return None
        options = [a for a in arguments if a is not type(None)]
        return _coerce(options[0], value, where) if len(options) == 1 else value
    if isinstance(hint, type) and issubclass(hint, JsonRecord):
        return hint.from_json(value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise RecordError(f"{where}: expected a list, got {type(value).__name__}")
        item_hint = arguments[0] if arguments else Any
        return tuple(_coerce(item_hint, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where}: expected an object, got {type(value).__name__}")
        value_hint = arguments[1] if len(arguments) == 2 else Any
        return {k: _coerce(value_hint, v, f"{where}.{k}") for k, v in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (bool, int, float, str):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise RecordError(f"{where}: expected {hint.__name__}, got {type(value).__name__} {value!r}")
    return value
