"""The sagas list's projection: one row per saga, kept current by following the store.

It reads only the records that change a saga's row (a request, the start, an abort, the
finish, a resume: ``read_all(types=…)``, a few per saga, never a saga's whole stream),
first the history, then live. A page of the list is a slice of rows already in memory,
filtered and sorted on request: no read per saga, however many there are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from eventstore import EventLog, Record
from orchestrator.core.commands import AbortSaga, FinishSaga, StartSaga
from orchestrator.core.events import ResumeRequested, SagaStarted
from orchestrator.runtime.saga_log import STREAM_PREFIX, saga_of

__all__ = ["Page", "SagaIndex", "SagaRow"]

logger = logging.getLogger("orchestrator")

TYPES = (
    StartSaga.type_name,
    SagaStarted.type_name,
    AbortSaga.type_name,
    FinishSaga.type_name,
    ResumeRequested.type_name,
)
_BATCH = 5000

STATUSES = ("requested", "running", "compensating", "completed", "compensated", "failed")


@dataclass(slots=True)
class SagaRow:
    saga_id: str
    workflow: str
    status: str
    requested_at: str
    """When the saga was first recorded (the store's ``recorded_at``)."""
    updated_at: str
    position: int
    """The store position of the last record that changed this row."""


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[SagaRow]
    total: int
    """Rows matching the filters."""
    offset: int
    size: int


class SagaIndex:
    """Rows of every saga in a store, following it from a background task."""

    def __init__(self, store: EventLog, *, poll_interval: float = 0.25) -> None:
        self._store = store
        self._poll = poll_interval
        self._rows: dict[str, SagaRow] = {}
        self._task: asyncio.Task[None] | None = None
        self.position = 0
        """The last store position applied."""
        self.caught_up = asyncio.Event()

    def wake(self) -> None:
        """Start following the store, if not yet, from a background task: the history
        first (``caught_up`` is set when it is read), then live. The dashboard wakes it
        with the first page that needs it: an engine nobody looks at reads nothing."""
        if self._task is None:
            self._task = asyncio.create_task(self._follow(), name="ui-saga-index")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _follow(self) -> None:
        while True:
            try:
                batch = await self._store.read_all(self.position, _BATCH, types=TYPES)
            except Exception as exc:  # the page shows what it has; the store comes back
                logger.warning("dashboard: cannot read the store (%s); retrying", exc)
                batch = []
                await asyncio.sleep(self._poll)
            for record in batch:
                self.apply(record)
            if len(batch) < _BATCH:
                self.caught_up.set()
                await asyncio.sleep(self._poll)

    def apply(self, record: Record) -> None:
        self.position = max(self.position, record.position)
        if not record.stream_id.startswith(STREAM_PREFIX):
            return
        saga_id = saga_of(record.stream_id)
        row = self._rows.pop(saga_id, None)  # re-inserted: the dict stays in change order
        at = record.recorded_at
        data: dict[str, Any] = dict(record.data)
        if row is None:
            workflow = str(data.get("workflow", "?"))
            row = SagaRow(saga_id, workflow, "requested", at, at, record.position)
        self._rows[saga_id] = row
        row.updated_at, row.position = at, record.position
        kind = record.type
        if kind == SagaStarted.type_name:
            row.status = "running"
        elif kind == AbortSaga.type_name:
            row.status = "compensating" if data.get("compensate") else "running"
        elif kind == FinishSaga.type_name:
            row.status = str(data.get("status", row.status))
        elif kind == ResumeRequested.type_name and row.status == "failed":
            row.status = "running"

    def get(self, saga_id: str) -> SagaRow | None:
        return self._rows.get(saga_id)

    def counts(self, workflow: str | None = None) -> dict[str, int]:
        """Sagas by status (of one workflow)."""
        out = dict.fromkeys(STATUSES, 0)
        for row in self._rows.values():
            if workflow is None or row.workflow == workflow:
                out[row.status] = out.get(row.status, 0) + 1
        return out

    def page(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        search: str | None = None,
        since: str | None = None,
        offset: int = 0,
        size: int = 50,
    ) -> Page:
        """Rows matching the filters, the most recently changed first. ``search`` is a
        saga id prefix; ``since`` an ISO time (``recorded_at`` form) of the last change."""
        rows: list[SagaRow] = []
        total = 0
        for row in reversed(self._rows.values()):  # the last changed first
            if (
                (workflow is None or row.workflow == workflow)
                and (status is None or row.status == status)
                and (search is None or row.saga_id.startswith(search))
                and (since is None or row.updated_at >= since)
            ):
                if offset <= total < offset + size:
                    rows.append(row)
                total += 1
        return Page(rows, total, offset, size)

    def __len__(self) -> int:
        return len(self._rows)
