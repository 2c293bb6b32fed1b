"""Messages ↔ stored data: plain JSON objects keyed by the dataclass's field names.

A record's ``kind`` and ``type`` come from the message's class (``cls.kind``,
``cls.type_name``: see ``messages``, the one registry of stable type names, never a
Python ``module:qualname``, so classes can move); ``data`` is what ``encode`` returns.
Encoding refuses anything that is not plain JSON (NaN, infinity, tuples, non-string
keys, other objects), so what is stored decodes to an equal message.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Mapping
from typing import Any

from orchestrator.core.commands import CompensateStep, ExecuteStep, FinishSaga
from orchestrator.core.messages import SagaMessage, message_type
from orchestrator.core.state import SagaStatus
from orchestrator.errors import CodecError

__all__ = ["decode", "encode"]


def encode(message: SagaMessage, *, trusted: bool = False) -> dict[str, Any]:
    """The stored data of ``message``. ``CodecError`` if it is not plain JSON.

    ``trusted=True`` is for messages whose mappings are known to be plain JSON already
    (decoded from a record or the wire, or built by the engine from such): they are
    copied, not walked.

    The mappings of the commands the core derives (``ExecuteStep.data``,
    ``CompensateStep.data``, ``FinishSaga.output``) are merges of a saga's input and its
    steps' outputs, which were checked when their events were encoded: they are copied,
    not walked again (the event store still refuses anything that is not JSON).
    """
    cls = type(message)
    name = getattr(cls, "type_name", None)
    if name is None or message_type(name) is not cls:
        raise CodecError(f"not a saga message: {cls.__name__}")
    data: dict[str, Any] = {}
    fields = _shallow_fields(cls) if trusted or cls in _DERIVED else _fields(cls)
    for fname, (to_json, _) in fields.items():
        value = getattr(message, fname)
        try:
            data[fname] = to_json(value)
        except (TypeError, ValueError) as exc:
            raise CodecError(f"{name}.{fname}: {exc}") from None
    return data


def decode(kind: str, type_name: str, data: Mapping[str, Any]) -> SagaMessage:
    """The message a stored record holds. ``CodecError`` for an unknown type, a kind
    that does not match it, or data with missing, extra or ill-typed fields."""
    cls = message_type(type_name)
    if cls is None:
        raise CodecError(f"unknown record type {type_name!r}")
    if kind != cls.kind:
        raise CodecError(f"{type_name} is stored as {cls.kind!r}, not {kind!r}")
    if not isinstance(data, Mapping):
        raise CodecError(f"{type_name}: data must be a JSON object, not {type(data).__name__}")
    fields = _fields(cls)
    missing = sorted(set(fields) - set(data))
    extra = sorted(set(data) - set(fields))
    if missing or extra:
        raise CodecError(f"{type_name}: missing fields {missing}, unknown fields {extra}")
    values: dict[str, Any] = {}
    for fname, (_, from_json) in fields.items():
        try:
            values[fname] = from_json(data[fname])
        except (TypeError, ValueError) as exc:
            raise CodecError(f"{type_name}.{fname}: {exc}") from None
    return cls(**values)


# --- field converters, derived once per class from its annotations --------------------

Converter = Callable[[Any], Any]
_CACHE: dict[type, dict[str, tuple[Converter, Converter]]] = {}


def _shallow_fields(cls: type) -> dict[str, tuple[Converter, Converter]]:
    cached = _SHALLOW.get(cls)
    if cached is None:
        cached = dict(_fields(cls))
        for fname, (to_json, from_json) in cached.items():
            if to_json is _object:
                cached[fname] = (_shallow_object, from_json)
        _SHALLOW[cls] = cached
    return cached


def _shallow_object(value: Any) -> dict[str, Any]:
    if type(value) is not dict and not isinstance(value, Mapping):
        raise TypeError(f"expected a JSON object, got {type(value).__name__}")
    return dict(value)


def _fields(cls: type) -> dict[str, tuple[Converter, Converter]]:
    cached = _CACHE.get(cls)
    if cached is None:
        hints = typing.get_type_hints(cls)
        cached = {f.name: _converters(hints[f.name]) for f in dataclasses.fields(cls)}
        _CACHE[cls] = cached
    return cached


def _converters(hint: Any) -> tuple[Converter, Converter]:
    args = typing.get_args(hint)
    if type(None) in args:
        (inner,) = (a for a in args if a is not type(None))
        to_json, from_json = _converters(inner)
        return (
            lambda v: None if v is None else to_json(v),
            lambda v: None if v is None else from_json(v),
        )
    if hint is str:
        return _expect(str), _expect(str)
    if hint is bool:
        return _expect(bool), _expect(bool)
    if hint is int:
        return _int, _int
    if hint is float:
        return _float, _float
    if hint is SagaStatus:
        return lambda v: SagaStatus(v).value, SagaStatus
    if typing.get_origin(hint) is Mapping:
        return _object, _object
    raise TypeError(f"no codec for {hint!r}")  # pragma: no cover - a new field type


def _expect(t: type) -> Converter:
    def check(value: Any) -> Any:
        if type(value) is not t:
            raise TypeError(f"expected {t.__name__}, got {type(value).__name__}")
        return value

    return check


def _int(value: Any) -> int:
    if type(value) is not int:
        raise TypeError(f"expected int, got {type(value).__name__}")
    return value


def _float(value: Any) -> float:
    if type(value) not in (int, float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{value!r} is not valid JSON")
    return float(value)


def _object(value: Any) -> dict[str, Any]:
    if type(value) is not dict and not isinstance(value, Mapping):
        raise TypeError(f"expected a JSON object, got {type(value).__name__}")
    return {k: _json(v, k) for k, v in _items(value)}


def _items(value: Mapping[Any, Any]) -> list[tuple[str, Any]]:
    for key in value:
        if not isinstance(key, str):
            raise TypeError(f"object key {key!r} is not a string")
    return list(value.items())


def _json(value: Any, path: str) -> Any:
    t = type(value)
    if value is None or t is str or t is bool or t is int:
        return value
    if t is float:
        if not math.isfinite(value):
            raise ValueError(f"{path}: {value!r} is not valid JSON")
        return value
    if t is list:
        return [_json(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if t is dict or isinstance(value, Mapping):
        return {k: _json(v, f"{path}.{k}") for k, v in _items(value)}
    raise TypeError(f"{path}: {t.__name__} is not plain JSON")


_SHALLOW: dict[type, dict[str, tuple[Converter, Converter]]] = {}
_DERIVED = frozenset({ExecuteStep, CompensateStep, FinishSaga})
"""Commands the core derives from checked events: their mappings are never walked."""
