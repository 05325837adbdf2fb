"""Typed dataclasses checked at the boundary: the one validation engine for JSON records and config sections.

A record's ``to_json`` gives plain JSON types (tuples become lists, nested
records dicts); ``from_json`` rebuilds it from such a dict and raises
:class:`RecordError` naming the record, the field and the problem for an
unknown field, a missing one or a value of the wrong type, so a stale or
hand-edited file fails loudly at the boundary instead of deep inside.

A setting of the runtime's config is a dataclass field declared with
:func:`setting` (default, description, choices, range); :func:`build_checked`
builds a config section from a parsed TOML table with the same checks, plus the
setting's choices and range, and raises the caller's error type.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping, TypeVar, get_type_hints

from edge_runtime.core.errors import FerError

R = TypeVar("R", bound="JsonRecord")
T = TypeVar("T")


class RecordError(FerError):
    """A JSON document does not match the record it is read as."""


def setting(default, doc: str, *, choices: tuple | None = None, minimum: float | None = None,
            maximum: float | None = None):
    """A config field: default value, description and constraints (read by :func:`build_checked` and the docs)."""
    return field(default=default, metadata={"doc": doc, "choices": choices, "min": minimum, "max": maximum})


@dataclass(frozen=True)
class Dialect:
    """How a kind of document names its parts in errors: JSON records have fields and objects, TOML config has keys
    and tables; ``renamed`` maps an old key path to what replaced it."""

    error: type[FerError] = RecordError
    noun: str = "field"
    container: str = "an object"
    renamed: Mapping[str, str] = dataclasses.field(default_factory=dict)


RECORD = Dialect()


class JsonRecord:
    """Mixin for frozen dataclasses: ``to_json()`` and ``from_json(raw)`` with strict field checking."""

    def to_json(self) -> dict:
        """The record as a JSON-ready dict."""
        return {item.name: _plain(getattr(self, item.name)) for item in dataclasses.fields(self)}

    @classmethod
    def from_json(cls: type[R], raw: Any, where: str = "") -> R:
        """Rebuild the record from ``raw``; ``where`` names the document in errors."""
        return build_checked(cls, raw, where or cls.__name__, RECORD)


def build_checked(cls: type[T], raw: Any, where: str, dialect: Dialect = RECORD) -> T:
    """``cls`` (a dataclass) from the dict ``raw``: unknown and missing fields, types, choices and ranges checked,
    nested dataclasses built the same way; errors of ``dialect.error`` name the path (``where``) and the value."""
    if not isinstance(raw, dict):
        raise dialect.error(f"{where or 'config'}: expected {dialect.container}, got {type(raw).__name__}"
                            + ("" if dialect is RECORD else f" {raw!r}"))
    fields = {item.name: item for item in dataclasses.fields(cls)}
    _refuse_unknown(cls, raw, fields, where, dialect)
    missing = [key for key, item in fields.items() if key not in raw and _required(item)]
    if missing:
        raise dialect.error(f"{where}: missing {dialect.noun}(s) {', '.join(missing)}")
    hints = get_type_hints(cls)
    values = {key: _coerce(hints[key], value, f"{where}.{key}" if where else key, fields[key].metadata, dialect)
              for key, value in raw.items()}
    return cls(**values)


def _refuse_unknown(cls, raw: dict, fields: dict, where: str, dialect: Dialect) -> None:
    unknown = sorted(set(raw) - set(fields))
    if not unknown:
        return
    prefix = f"{where}." if where else ""
    for key in unknown:
        if prefix + key in dialect.renamed:
            raise dialect.error(f"{prefix}{key} was replaced by {dialect.renamed[prefix + key]}")
    if dialect is RECORD:
        raise dialect.error(f"{where}: unknown field(s) {', '.join(unknown)}; {cls.__name__} has {', '.join(fields)}")
    raise dialect.error(f"unknown {dialect.noun}(s) {', '.join(prefix + key for key in unknown)}; allowed in "
                        f"{where or 'the top level'}: {', '.join(fields)}")


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


def _coerce(hint: Any, value: Any, where: str, meta: Mapping = types.MappingProxyType({}),
            dialect: Dialect = RECORD) -> Any:
    """``value`` checked against ``hint`` (records, sections, optionals, tuples, dicts and scalars) and against the
    setting's ``meta`` (choices, range)."""
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in arguments:
            return None
        options = [a for a in arguments if a is not type(None)]
        return _coerce(options[0], value, where, meta, dialect) if len(options) == 1 else value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return build_checked(hint, value, where, dialect)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise dialect.error(f"{where}: expected a list, got {type(value).__name__}")
        item_hint = arguments[0] if arguments else Any
        return tuple(_coerce(item_hint, v, f"{where}[{i}]", dialect=dialect) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise dialect.error(f"{where}: expected {dialect.container}, got {type(value).__name__}")
        value_hint = arguments[1] if len(arguments) == 2 else Any
        return {k: _coerce(value_hint, v, f"{where}.{k}", dialect=dialect) for k, v in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if hint in (bool, int, float, str):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise dialect.error(f"{where}: expected {hint.__name__}, got {type(value).__name__} {value!r}")
        _check_constraints(value, where, meta, dialect)
    return value


def _check_constraints(value: Any, where: str, meta: Mapping, dialect: Dialect) -> None:
    """A setting's allowed values and range (from :func:`setting`)."""
    if meta.get("choices") and value not in meta["choices"]:
        raise dialect.error(f"{where}: {value!r} is not allowed; choose one of {', '.join(map(str, meta['choices']))}")
    if meta.get("min") is not None and value < meta["min"]:
        raise dialect.error(f"{where}: {value!r} is below the minimum {meta['min']}")
    if meta.get("max") is not None and value > meta["max"]:
        raise dialect.error(f"{where}: {value!r} is above the maximum {meta['max']}")
