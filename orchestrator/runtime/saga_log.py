"""A saga's stream in the event store: naming, encoding, loading, a cache of states.

Each saga is one stream, ``saga-<saga_id>``. Its records are the codec's (kind, type,
data) with metadata naming the saga and what caused the record. The engine keeps the
states it has folded recently, keyed by saga id with the stream version they stand
for; a miss, or a ``ConcurrencyError`` (someone else wrote), reloads from the store.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from eventstore import EventStore, ExpectedVersion, NewRecord, Record
from orchestrator.core.codec import Storable, decode, encode
from orchestrator.core.commands import StartSaga
from orchestrator.core.react import Message, evolve
from orchestrator.core.state import SagaState

STREAM_PREFIX = "saga-"


def stream_of(saga_id: str) -> str:
    return STREAM_PREFIX + saga_id


def saga_of(stream_id: str) -> str:
    return stream_id[len(STREAM_PREFIX) :]


def to_record(
    message: Storable, causation_id: str | None = None, *, trusted: bool = False
) -> NewRecord:
    record = encode(message, trusted=trusted)
    metadata: dict[str, Any] = {"saga_id": message.saga_id, "correlation_id": message.saga_id}
    if causation_id is not None:
        metadata["causation_id"] = causation_id
    return NewRecord(record.kind, record.type, record.data, metadata)


def from_record(record: Record) -> Storable:
    return decode(record.kind, record.type, record.data)


def fold_records(records: Sequence[Record]) -> SagaState | None:
    state: SagaState | None = None
    for record in records:
        message = from_record(record)
        if not isinstance(message, StartSaga):
            state = evolve(state, message)
    return state


class SagaLog:
    """Loads and appends saga streams, with a bounded cache of folded states."""

    def __init__(self, store: EventStore, *, cache_size: int = 10_000) -> None:
        self.store = store
        self._cache: OrderedDict[str, tuple[SagaState | None, int, StartSaga | None]] = (
            OrderedDict()
        )
        self._cache_size = cache_size

    def cached(self, saga_id: str) -> SagaState | None:
        entry = self._cache.get(saga_id)
        return entry[0] if entry else None

    async def load(
        self, saga_id: str, *, fresh: bool = False
    ) -> tuple[SagaState | None, int, StartSaga | None]:
        """The saga's state (None before SagaStarted), its stream version, and the
        client's StartSaga request if the stream holds one.

        From the cache unless ``fresh``. A read from the store never replaces a newer
        cached state: an append may have landed while it was reading.
        """
        entry = self._cache.get(saga_id)
        if entry is not None and not fresh:
            self._cache.move_to_end(saga_id)
            return entry
        records = await self.store.read_stream(stream_of(saga_id))
        request = None
        if records:
            first = from_record(records[0])
            if isinstance(first, StartSaga):
                request = first
        entry = (fold_records(records), len(records), request)
        newer = self._cache.get(saga_id)
        if newer is not None and newer[1] >= entry[1]:
            return newer
        self._remember(saga_id, entry)
        return entry

    def is_cached(self, saga_id: str) -> bool:
        return saga_id in self._cache

    def forget(self, saga_id: str) -> None:
        self._cache.pop(saga_id, None)

    async def append(
        self,
        saga_id: str,
        state: SagaState,
        messages: Sequence[Message],
        expected: ExpectedVersion,
        causation_id: str | None = None,
        request: StartSaga | None = None,
        *,
        with_request: bool = False,
        trusted: bool = False,
    ) -> list[NewRecord]:
        """Append ``messages`` (whose fold gives ``state``) and cache the new state.

        Returns the records written for ``messages``, in order, so the caller can send
        the commands' data without encoding them again. ``trusted``: the messages hold
        only plain JSON already (see ``encode``).
        """
        records = [to_record(m, causation_id, trusted=trusted) for m in messages]
        written = records
        if with_request and request is not None:
            written = [to_record(request), *records]
        result = await self.store.append(stream_of(saga_id), written, expected)
        self._remember(saga_id, (state, result.last_version, request))
        return records

    def _remember(
        self, saga_id: str, entry: tuple[SagaState | None, int, StartSaga | None]
    ) -> None:
        self._cache[saga_id] = entry
        self._cache.move_to_end(saga_id)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)


__all__ = ["STREAM_PREFIX", "SagaLog", "fold_records", "saga_of", "stream_of"]
