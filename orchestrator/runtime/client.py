"""Talking to the engine through the store: request a saga, read sagas back.

A client needs nothing but the store's URL: ``request_saga`` appends a ``StartSaga``
command to the new saga's stream, and any running engine, tailing the store, starts
it. A start is never lost between "accepted" and "running": it is in the log.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eventstore import NO_STREAM, ConcurrencyError, EventLog
from orchestrator.core.commands import StartSaga
from orchestrator.core.state import SagaState
from orchestrator.errors import SagaExistsError
from orchestrator.runtime.saga_log import STREAM_PREFIX, fold_records, saga_of, stream_of, to_record


async def request_saga(
    store: EventLog,
    workflow: str,
    input: Mapping[str, Any],
    *,
    saga_id: str | None = None,
    traceparent: str | None = None,
) -> str:
    """Ask for a saga of ``workflow``; a running engine picks it up. Returns its id.

    ``traceparent``: the caller's W3C trace context; an engine that traces makes the
    saga's span its child, so the saga joins the caller's trace."""
    saga_id = saga_id or uuid.uuid4().hex
    request = StartSaga(saga_id, workflow, dict(input))
    record = to_record(request, traceparent=traceparent)
    try:
        await store.append(stream_of(saga_id), [record], NO_STREAM)
    except ConcurrencyError:
        raise SagaExistsError(f"saga {saga_id!r} already exists") from None
    return saga_id


async def read_saga(store: EventLog, saga_id: str) -> tuple[SagaState | None, int]:
    """The saga's state folded from the store (None until an engine started it), and
    its stream version (0: no such saga)."""
    records = await store.read_stream(stream_of(saga_id))
    return fold_records(records), len(records)


async def wait_in_store(
    store: EventLog, saga_id: str, *, timeout: float | None = None, poll: float = 0.1
) -> SagaState:
    """Follow the saga's stream until it is terminal (whichever engine runs it)."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    while True:
        state, _ = await read_saga(store, saga_id)
        if state is not None and state.is_terminal:
            return state
        if deadline is not None and loop.time() >= deadline:
            raise TimeoutError(f"saga {saga_id!r} is not finished after {timeout}s")
        await asyncio.sleep(poll)


@dataclass(frozen=True, slots=True)
class SagaSummary:
    saga_id: str
    workflow: str
    status: str
    started_at: float | None
    steps_done: int
    version: int


async def list_sagas(store: EventLog, limit: int = 50) -> list[SagaSummary]:
    """The first ``limit`` sagas of the store, in id order."""
    out: list[SagaSummary] = []
    for info in await store.streams(STREAM_PREFIX, limit=limit):
        saga_id = saga_of(info.stream_id)
        state, version = await read_saga(store, saga_id)
        if state is None:
            records = await store.read_stream(info.stream_id, limit=1)
            workflow = str(records[0].data.get("workflow", "?")) if records else "?"
            out.append(SagaSummary(saga_id, workflow, "requested", None, 0, version))
            continue
        done = sum(1 for st in state.steps.values() if st.phase.value == "succeeded")
        out.append(
            SagaSummary(
                saga_id, state.workflow, state.status.value, state.started_at, done, version
            )
        )
    return out
