"""Re-computes the hash chain and names the first record that does not match."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from ._canonical import body_json, canonical_json, chain_hash, genesis_hash
from ._records import Record

Problem = Literal[
    "hash mismatch",
    "broken link",
    "missing version",
    "position not increasing",
    "missing position",
]


@dataclass(frozen=True, slots=True)
class BrokenRecord:
    """The first record at which the chain stops verifying, and why."""

    stream_id: str
    version: int
    position: int
    reason: Problem
    expected: str
    """What the chain says should be there (a hash, a version, a position)."""
    found: str
    """What the record holds."""

    def describe(self) -> str:
        return (
            f"stream {self.stream_id!r} version {self.version} (position {self.position}): "
            f"{self.reason}: expected {self.expected}, found {self.found}"
        )


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last record a verification accepted, where the chain ends.

    Note it down: the chain cannot show that records were cut off its end, but a later
    verification whose head lies before this position, or holds another hash here, does.
    """

    position: int
    stream_id: str
    version: int
    hash: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of a verification over one stream or the whole store."""

    records_checked: int
    streams_checked: int
    first_broken: BrokenRecord | None = None
    last_position: int = 0
    stream_heads: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    head: ChainHead | None = None
    """The last record verified (before ``first_broken``, if any); None when none was."""

    @property
    def ok(self) -> bool:
        return self.first_broken is None


def record_hash(record: Record) -> str:
    """The hash ``record`` should carry, recomputed from its fields and ``prev_hash``."""
    body = body_json(
        data_json=canonical_json(record.data),
        kind_json=canonical_json(record.kind),
        metadata_json=canonical_json(record.metadata),
        prev_hash=record.prev_hash,
        recorded_at=record.recorded_at,
        stream_id_json=canonical_json(record.stream_id),
        type_json=canonical_json(record.type),
        version=record.version,
    )
    return chain_hash(record.prev_hash, body)


class ChainVerifier:
    """Feed records in position order (any mix of streams); stops at the first break.

    ``contiguous=True`` is for a pass over the *whole* store from its first record: the
    store assigns positions 1, 2, 3 … with no gap (``max + 1`` under the write lock, in
    the committing transaction), so a gap means a record was deleted or moved away,
    even the last record of its stream, which no stream's chain can show. One stream
    alone, or a page of the store, has gaps and is fed with the default.
    """

    def __init__(self, *, contiguous: bool = False) -> None:
        self._contiguous = contiguous
        self._heads: dict[str, tuple[int, str]] = {}
        self._last_position = 0
        self._last: Record | None = None
        self._count = 0
        self.first_broken: BrokenRecord | None = None

    def feed(self, record: Record) -> bool:
        """Check one record; False once the chain is broken."""
        if self.first_broken is not None:
            return False
        self._count += 1
        problem = self._check(record)
        if problem is not None:
            self.first_broken = problem
            return False
        self._heads[record.stream_id] = (record.version, record.hash)
        self._last_position = record.position
        self._last = record
        return True

    def _check(self, record: Record) -> BrokenRecord | None:
        def broken(reason: Problem, expected: object, found: object) -> BrokenRecord:
            return BrokenRecord(
                record.stream_id, record.version, record.position, reason, str(expected), str(found)
            )

        if record.position <= self._last_position:
            return broken("position not increasing", f"> {self._last_position}", record.position)
        version, prev = self._heads.get(record.stream_id, (0, genesis_hash(record.stream_id)))
        if record.version != version + 1:
            return broken("missing version", version + 1, record.version)
        if record.prev_hash != prev:
            return broken("broken link", prev, record.prev_hash)
        expected_hash = record_hash(record)
        if record.hash != expected_hash:
            return broken("hash mismatch", expected_hash, record.hash)
        # Last, so that a record the stream's own chain already condemns is named for
        # that; a gap alone (a stream's last record deleted) is named here.
        if self._contiguous and record.position != self._last_position + 1:
            return broken("missing position", self._last_position + 1, record.position)
        return None

    def report(self) -> VerifyReport:
        last = self._last
        return VerifyReport(
            records_checked=self._count,
            streams_checked=len(self._heads)
            + (1 if self.first_broken and self.first_broken.stream_id not in self._heads else 0),
            first_broken=self.first_broken,
            last_position=self._last_position,
            stream_heads={s: v for s, (v, _) in self._heads.items()},
            head=None
            if last is None
            else ChainHead(last.position, last.stream_id, last.version, last.hash),
        )


def verify_records(records: Iterable[Record], *, contiguous: bool = False) -> VerifyReport:
    """Verify records given in position order (``contiguous``: see ``ChainVerifier``)."""
    verifier = ChainVerifier(contiguous=contiguous)
    for record in records:
        if not verifier.feed(record):
            break
    return verifier.report()
