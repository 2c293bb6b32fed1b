"""What a saga's log holds, and the one registry of stable type names.

Every stored message is a frozen dataclass deriving from ``Event`` (what the saga
learns), ``Command`` (what it decides) or ``Request`` (what a client asks for), and
carries its stable type name, given once, where the class is defined::

    @stored_as("saga.step_succeeded")
    @dataclass(frozen=True, slots=True)
    class StepSucceeded(Event): ...

``kind`` (``"event"`` or ``"command"``, as the event store records it) comes from the
base class. The codec, the wire, replay, adoption and the audit all look types up
here (``message_type``, ``cls.type_name``); nothing compares type-name strings. A type
name is part of every stored log: never rename one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import ClassVar, Literal, TypeVar

__all__ = [
    "Command",
    "Event",
    "Kind",
    "Request",
    "SagaMessage",
    "message_type",
    "message_types",
    "stored_as",
]

Kind = Literal["event", "command"]


class SagaMessage:
    """Base of everything a saga's stream holds."""

    __slots__ = ()
    kind: ClassVar[Kind]
    """How the event store records it."""
    type_name: ClassVar[str]
    """The stable name stored with it (``saga.step_succeeded``), set by ``stored_as``."""
    saga_id: str


class Event(SagaMessage):
    """What the saga learns: folded by ``evolve`` and decided on by ``react``."""

    __slots__ = ()
    kind: ClassVar[Kind] = "event"


class Command(SagaMessage):
    """What the saga decides: recorded with the event that caused it, then executed."""

    __slots__ = ()
    kind: ClassVar[Kind] = "command"
    id: str
    """Deterministic, and the command's idempotency key (see ``commands``)."""


class Request(SagaMessage):
    """What a client asks for through the store; not part of the saga's fold."""

    __slots__ = ()
    kind: ClassVar[Kind] = "command"


_REGISTRY: dict[str, type[SagaMessage]] = {}

M = TypeVar("M", bound=type[SagaMessage])


def stored_as(type_name: str) -> Callable[[M], M]:
    """Register the decorated message class under ``type_name`` (apply it outermost,
    above ``@dataclass``, so the registered class is the final one)."""

    def register(cls: M) -> M:
        taken = _REGISTRY.get(type_name)
        if taken is not None and taken is not cls:
            raise TypeError(f"type name {type_name!r} is taken by {taken.__name__}")
        cls.type_name = type_name
        _REGISTRY[type_name] = cls
        return cls

    return register


def message_type(type_name: str) -> type[SagaMessage] | None:
    """The class stored under ``type_name``, or ``None``."""
    return _REGISTRY.get(type_name)


def message_types() -> Mapping[str, type[SagaMessage]]:
    """Every registered message class by type name (a read-only view)."""
    return MappingProxyType(_REGISTRY)
