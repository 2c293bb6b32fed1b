"""Calling a step function, sync or async, the way the step workers do."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping
from typing import Any

import orjson

from orchestrator.core.workflow import StepFunction
from orchestrator.errors import StepResultError

__all__ = ["call_step"]


def _private_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    try:  # the data is plain JSON (it came from the log or the wire): a JSON round trip
        copied: dict[str, Any] = orjson.loads(orjson.dumps(data))  # is ~10x deepcopy's speed
        return copied
    except TypeError:
        return copy.deepcopy(dict(data))


async def call_step(fn: StepFunction, data: Mapping[str, Any]) -> dict[str, Any]:
    """Call ``fn`` with a private deep copy of ``data``; await the result if it is
    awaitable (``async def`` steps); return it as a new ``dict``.

    ``None`` means "no output" (``{}``). Anything that is not a mapping raises
    ``StepResultError`` (non-retryable). Exceptions from ``fn`` propagate unchanged: the
    worker maps ``StepError(retryable=...)`` and any other exception (retryable) to
    ``StepFailed``. The copy keeps a step that mutates its input from changing the
    saga's recorded data.
    """
    result = fn(_private_copy(data))
    if inspect.isawaitable(result):
        result = await result
    if result is None:
        return {}
    if not isinstance(result, Mapping):
        name = getattr(fn, "__name__", repr(fn))
        raise StepResultError(
            f"{name} returned {type(result).__name__}; a step returns a dict (or None)"
        )
    return dict(result)
