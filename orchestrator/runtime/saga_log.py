"""A saga's stream in the event store: naming, encoding, loading, a cache of states.

Each saga is one stream, ``saga-<saga_id>``. Its records are the codec's (kind, type,
data) with metadata naming the saga and what caused the record. The engine keeps the
states it has folded recently, keyed by saga id with the stream version they stand
for; a miss, or a ``ConcurrencyError`` (someone else wrote), reloads from the store.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, NamedTuple

from eventstore import EventLog, ExpectedVersion, NewRecord, Record
from orchestrator.core.codec import decode, encode
from orchestrator.core.commands import StartSaga
from orchestrator.core.events import SagaStarted
from orchestrator.core.evolve import fold
from orchestrator.core.messages import SagaMessage
from orchestrator.core.state import SagaState

STREAM_PREFIX = "saga-"


def stream_of(saga_id: str) -> str:
    return STREAM_PREFIX + saga_id


def saga_of(stream_id: str) -> str:
    return stream_id[len(STREAM_PREFIX) :]


def to_record(
    message: SagaMessage,
    causation_id: str | None = None,
    *,
    trusted: bool = False,
    traceparent: str | None = None,
) -> NewRecord:
    """``traceparent``: the W3C trace context the saga's spans descend from, recorded
    in the metadata of its ``StartSaga`` (the client's) and ``SagaStarted`` (the
    saga's span) when tracing is on."""
    data = encode(message, trusted=trusted)
    metadata: dict[str, Any] = {"saga_id": message.saga_id, "correlation_id": message.saga_id}
    if causation_id is not None:
        metadata["causation_id"] = causation_id
    if traceparent is not None:
        metadata["traceparent"] = traceparent
    cls = type(message)
    return NewRecord(cls.kind, cls.type_name, data, metadata)


def from_record(record: Record) -> SagaMessage:
    return decode(record.kind, record.type, record.data)


def fold_records(records: Sequence[Record]) -> SagaState | None:
    return fold(from_record(record) for record in records)


class Loaded(NamedTuple):
    """A saga as its stream holds it."""

    state: SagaState | None
    """The folded state; ``None`` before ``SagaStarted``."""
    version: int
    """The stream's version (0: no such stream)."""
    request: StartSaga | None
    """The client's ``StartSaga``, when the stream begins with one."""
    trace: str | None = None
    """The ``traceparent`` recorded with ``SagaStarted`` (the saga's span), else with
    the ``StartSaga`` (the client's span); ``None`` when traced by no one."""


def _trace(records: Sequence[Record]) -> str | None:
    """``Loaded.trace`` of a stream: its ``SagaStarted``'s, else its ``StartSaga``'s."""
    found = None
    for record in records[:2]:  # StartSaga (when a client asked), then SagaStarted
        traceparent = record.metadata.get("traceparent")
        if isinstance(traceparent, str):
            found = traceparent
    return found


class SagaLog:
    """Loads and appends saga streams, with a bounded cache of folded states."""

    def __init__(self, store: EventLog, *, cache_size: int = 10_000) -> None:
        self.store = store
        self._cache: OrderedDict[str, Loaded] = OrderedDict()
        self._cache_size = cache_size

    def cached(self, saga_id: str) -> SagaState | None:
        entry = self._cache.get(saga_id)
        return entry.state if entry else None

    async def load(self, saga_id: str, *, fresh: bool = False) -> Loaded:
        """The saga from the cache, or (``fresh``, or not cached) from the store.

        A read from the store never replaces a newer cached state: an append may have
        landed while it was reading.
        """
        entry = self._cache.get(saga_id)
        if entry is not None and not fresh:
            self._cache.move_to_end(saga_id)
            return entry
        records = await self.store.read_stream(stream_of(saga_id))
        messages = [from_record(r) for r in records]
        request = messages[0] if messages and isinstance(messages[0], StartSaga) else None
        entry = Loaded(fold(messages), len(messages), request, _trace(records))
        newer = self._cache.get(saga_id)
        if newer is not None and newer.version >= entry.version:
            return newer
        self._remember(saga_id, entry)
        return entry

    def cached_version(self, saga_id: str) -> int | None:
        entry = self._cache.get(saga_id)
        return entry.version if entry else None

    def trace_of(self, saga_id: str) -> str | None:
        """The saga's recorded ``traceparent``, if it is cached (see ``Loaded.trace``)."""
        entry = self._cache.get(saga_id)
        return entry.trace if entry else None

    async def append(
        self,
        saga_id: str,
        state: SagaState,
        messages: Sequence[SagaMessage],
        expected: ExpectedVersion,
        causation_id: str | None = None,
        request: StartSaga | None = None,
        *,
        trusted: bool = False,
        trace: str | None = None,
    ) -> list[NewRecord]:
        """Append ``messages`` (whose fold, after the stream so far, gives ``state``) and
        cache the new state with the saga's ``request`` and ``trace``.

        Returns the records written, in order, so the caller can send the commands'
        data without encoding them again. ``trusted``: the messages hold only plain
        JSON already (see ``encode``). ``trace``: the saga's ``traceparent``, recorded
        with its ``SagaStarted`` when that is among ``messages``.
        """
        records = [
            to_record(
                m,
                causation_id,
                trusted=trusted,
                traceparent=trace if isinstance(m, SagaStarted) else None,
            )
            for m in messages
        ]
        result = await self.store.append(stream_of(saga_id), records, expected)
        self._remember(saga_id, Loaded(state, result.last_version, request, trace))
        return records

    def _remember(self, saga_id: str, entry: Loaded) -> None:
        self._cache[saga_id] = entry
        self._cache.move_to_end(saga_id)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)


__all__ = ["STREAM_PREFIX", "Loaded", "SagaLog", "fold_records", "saga_of", "stream_of"]
