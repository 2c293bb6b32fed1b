"""Logging: the project's loggers at the configured level, every record carrying the
saga it is about, as text or as one JSON object a line.

Nothing configures logging at import: a library user's application decides. The
``orchestrator`` command calls :func:`configure_logging` with the seed's ``log_level``
key (and ``--log-format``) once it has read the settings.

The context (saga id, workflow, step, attempt, correlation id) lives in a context
variable that the engine sets around the work on one saga and the worker around one
step; :class:`ContextFilter`, on the handler, copies it onto every record that passes,
from any logger, a step function's own included.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal

__all__ = [
    "CONTEXT_FIELDS",
    "PROJECT_LOGGERS",
    "ContextFilter",
    "JsonFormatter",
    "LogFormat",
    "TextFormatter",
    "configure_logging",
    "log_context",
]

PROJECT_LOGGERS = ("orchestrator", "brokers", "eventstore")
"""One logger per package; every module logs through its package's."""

CONTEXT_FIELDS = ("saga_id", "workflow", "step", "attempt", "correlation_id")
"""What a record may say about the work it was logged in, in this order."""

LogFormat = Literal["text", "json"]

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_NONE: Mapping[str, object] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, object]] = contextvars.ContextVar(
    "orchestrator_log_context", default=_NONE
)


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Within the block, every record logged (by this task and the tasks it starts)
    carries ``fields`` too, on top of the context already set. ``None`` values are left
    out."""
    merged = {**_context.get(), **{k: v for k, v in fields.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> Mapping[str, object]:
    return _context.get()


class ContextFilter(logging.Filter):
    """Copies the current context onto each record (``record.saga_id`` …, and all of it
    as ``record.context``); never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get()
        record.context = dict(context)
        for name, value in context.items():
            setattr(record, name, value)
        return True


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message`` and, when there is one, the context as
    ``key=value`` pairs at the end."""

    def __init__(self) -> None:
        super().__init__(_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context: Mapping[str, object] = getattr(record, "context", {})
        if not context:
            return line
        pairs = " ".join(f"{k}={context[k]}" for k in CONTEXT_FIELDS if k in context)
        head, newline, rest = line.partition("\n")  # a traceback stays below
        return f"{head} [{pairs}]{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``time`` (UTC, RFC 3339), ``level``, ``logger``,
    ``message``, the context's fields, and ``exception`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        doc.update(getattr(record, "context", {}))
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


def configure_logging(level: str, fmt: LogFormat = "text") -> None:
    """The project's loggers at ``level``; everything else at WARNING; one line a
    record on stderr, as ``fmt``, with the context. A root logger that already has
    handlers (the application's own) is left alone but for the levels."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.WARNING)
        for handler in root.handlers:
            handler.addFilter(ContextFilter())
            handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(level)
